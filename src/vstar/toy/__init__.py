"""A procedural toy domain for measuring VSTAR: coloured shapes on flat backgrounds (pure numpy, no torch).

``vstar.toy.scenes`` describes, captions and renders the clips; ``vstar.toy.classifier`` reads the visual
state (colour, shape, position, background, size) back from pixels without any learned weights.
``vstar.toy.model`` (torch) is the embedded text-to-video model trained on such clips by ``vstar.toy.train``.
"""
