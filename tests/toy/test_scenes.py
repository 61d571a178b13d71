"""Toy scenes: vocabulary, validation, captions and their parsing, rendering."""

import itertools

import numpy as np
import pytest

from vstar.toy.classifier import classify_clip, is_clean
from vstar.toy.scenes import (
    BACKGROUNDS,
    COLORS,
    MOTIONS,
    OPTIONAL_DETAILS,
    POSITIONS,
    SHAPES,
    SIZES,
    SPEEDS,
    Motion,
    Scene,
    all_captions,
    all_scenes,
    caption,
    motion_path,
    parse_caption,
    render_clip,
    render_frame,
    render_transition,
    sample_clip,
    sample_scene,
    shape_coverage,
)

_AREA_PER_R2 = {"circle": np.pi, "square": 4.0, "triangle": 2.0}


def _centroid(clip: np.ndarray) -> np.ndarray:
    """``(F, 2)`` centroid x, y of a white-on-black clip, in pixels."""
    alpha = clip[..., 0]
    area = alpha.sum(axis=(1, 2))
    x = (alpha.sum(axis=1) * (np.arange(alpha.shape[2]) + 0.5)).sum(axis=1) / area
    y = (alpha.sum(axis=2) * (np.arange(alpha.shape[1]) + 0.5)).sum(axis=1) / area
    return np.stack([x, y], axis=1)


def test_palette_is_well_separated():
    colors = np.array(list(COLORS.values()))
    backgrounds = np.array(list(BACKGROUNDS.values()))
    between_colors = np.linalg.norm(colors[:, None] - colors[None], axis=-1)[~np.eye(len(colors), dtype=bool)]
    assert between_colors.min() > 0.5
    assert np.linalg.norm(colors[:, None] - backgrounds[None], axis=-1).min() > 0.5
    assert all(0 <= c <= 1 for rgb in [*COLORS.values(), *BACKGROUNDS.values()] for c in rgb)


@pytest.mark.parametrize(
    "field, value", [("shape", "hexagon"), ("color", "teal"), ("size", "huge"), ("background", "pink"),
                     ("position", "top"), ("motion", "spinning")]
)
def test_scene_rejects_unknown_words_and_names_valid_ones(field, value):
    kwargs = dict(shape="circle", color="red", size="small", background="black", position="left")
    kwargs[field] = value
    with pytest.raises(ValueError, match=f"unknown {field} '{value}'; valid values: "):
        Scene(**kwargs)


def test_caption_wording():
    scene = Scene("circle", "red", "small", "black", "left")
    assert caption(scene) == "a small red circle on a black background, on the left"
    moving = Scene("square", "blue", "large", "navy", "center", "drifting right")
    assert caption(moving) == "a large blue square on a navy background, in the center, drifting right"


def test_caption_can_leave_out_details():
    scene = Scene("square", "blue", "large", "navy", "right", "drifting left")
    assert caption(scene, omit=OPTIONAL_DETAILS) == "a blue square"
    assert caption(scene, omit=("size", "position", "motion")) == "a blue square on a navy background"
    assert caption(scene, omit=("background",)) == "a large blue square, on the right, drifting left"
    assert caption(scene, omit=("size", "background")) == "a blue square, on the right, drifting left"


@pytest.mark.parametrize("omit", [("colour",), ("shape",), ("size", "mood")])
def test_caption_refuses_to_leave_out_unknown_or_essential_details(omit):
    with pytest.raises(ValueError, match="cannot omit .*; omit any of size, background, position, motion"):
        caption(Scene("circle", "red", "small", "black", "left"), omit=omit)


def test_partial_captions_parse_back_to_what_they_name():
    scene = Scene("triangle", "green", "small", "gray", "left", "drifting right")
    for k in range(len(OPTIONAL_DETAILS) + 1):
        for omit in itertools.combinations(OPTIONAL_DETAILS, k):
            parsed = parse_caption(caption(scene, omit=omit))
            for field in ("shape", "color", "size", "background", "position", "motion"):
                if field not in omit:
                    assert getattr(parsed, field) == getattr(scene, field), (omit, field)


def test_all_captions_cover_every_combination_once_in_a_fixed_order():
    captions = all_captions()
    expected = len(SHAPES) * len(COLORS) * len(SIZES) * len(BACKGROUNDS) * len(POSITIONS) * len(MOTIONS)
    assert len(captions) == len(set(captions)) == expected
    assert captions == all_captions()
    assert captions[0] == caption(all_scenes()[0])


def test_parse_caption_inverts_caption():
    assert [parse_caption(c) for c in all_captions()] == all_scenes()


@pytest.mark.parametrize(
    "text, expected",
    [
        ("a red circle turning into a blue square", Scene("circle", "red", "large", "black", "center")),
        ("A big Yellow triangle on a grey background drifting to the left",
         Scene("triangle", "yellow", "large", "gray", "center", "drifting left")),
        ("tiny white squares in the middle, moving right",
         Scene("square", "white", "small", "black", "center", "drifting right")),
        ("a purple circle on the right, on a navy background",
         Scene("circle", "purple", "large", "navy", "right")),
    ],
)
def test_parse_caption_is_tolerant(text, expected):
    assert parse_caption(text) == expected


@pytest.mark.parametrize("text", ["a red blob", "a circle", "", "a black background"])
def test_parse_caption_needs_shape_and_colour(text):
    assert parse_caption(text) is None


@pytest.mark.parametrize("shape, area_per_r2", [("circle", np.pi), ("square", 4.0), ("triangle", 2.0)])
def test_shape_coverage_area_matches_geometry(shape, area_per_r2):
    r = 5.3
    cover = shape_coverage(shape, 16.2, 15.7, r, 32, 32)
    assert cover.shape == (32, 32) and cover.dtype == np.float32
    assert 0 <= cover.min() and cover.max() <= 1
    assert cover.sum() == pytest.approx(area_per_r2 * r**2, rel=0.02)


def test_render_frame_is_antialiased_and_in_range():
    frame = render_frame(Scene("circle", "white", "large", "black", "center"))
    assert frame.shape == (32, 32, 3) and frame.dtype == np.float32
    assert frame.min() >= 0 and frame.max() <= 1
    levels = np.unique(frame[..., 0])
    assert len(levels) > 2  # edge pixels blend shape and background
    assert np.allclose(frame[0, 0], BACKGROUNDS["black"]) and np.allclose(frame[16, 16], COLORS["white"])


def test_render_frame_scales_with_size():
    scene = Scene("square", "white", "small", "black", "left")
    area32 = render_frame(scene, size=32)[..., 0].sum()
    area64 = render_frame(scene, size=64)[..., 0].sum()
    assert area64 == pytest.approx(4 * area32)


def test_render_is_deterministic():
    scene = Scene("triangle", "green", "large", "gray", "right", "drifting left")
    assert np.array_equal(render_clip(scene), render_clip(scene))
    noisy = [render_clip(scene, 4, rng=np.random.default_rng(3), noise=0.05) for _ in range(2)]
    assert np.array_equal(*noisy)
    assert noisy[0].dtype == np.float32 and noisy[0].min() >= 0 and noisy[0].max() <= 1
    assert not np.array_equal(noisy[0], render_clip(scene, 4))


def test_still_clips_repeat_one_frame():
    clip = render_clip(Scene("circle", "red", "small", "navy", "center"), num_frames=5)
    assert clip.shape == (5, 32, 32, 3)
    assert all(np.array_equal(frame, clip[0]) for frame in clip)


@pytest.mark.parametrize("position", POSITIONS)
@pytest.mark.parametrize("motion, direction", [("drifting left", -1), ("drifting right", 1)])
@pytest.mark.parametrize("shape", SHAPES)
def test_drift_stays_in_frame_and_moves_the_stated_way(position, motion, direction, shape):
    scene = Scene(shape, "white", "large", "black", position, motion)
    clip = render_clip(scene, num_frames=8)
    area = clip[..., 0].sum(axis=(1, 2))  # white on black: channel sum is the covered area
    full_area = {"circle": np.pi, "square": 4.0, "triangle": 2.0}[shape] * SIZES["large"] ** 2
    assert area == pytest.approx(np.full(8, full_area), rel=0.005)  # nothing cut off by the frame edge
    centroid_x = (clip[..., 0].sum(axis=1) * (np.arange(32) + 0.5)).sum(axis=1) / area
    steps = np.diff(centroid_x) * direction
    assert (steps > 0).all()
    assert 2 <= centroid_x[-1] * direction - centroid_x[0] * direction <= 4  # a few pixels, not more


def test_render_transition_switches_at_the_middle():
    a = Scene("circle", "red", "large", "black", "center")
    b = Scene("square", "blue", "large", "black", "center")
    clip = render_transition(a, b, num_frames=6)
    assert clip.shape == (6, 32, 32, 3)
    assert all(np.array_equal(f, render_frame(a)) for f in clip[:3])
    assert all(np.array_equal(f, render_frame(b)) for f in clip[3:])


def test_sample_scene_is_seeded_and_respects_motion_prob():
    draw = [sample_scene(np.random.default_rng(7)) for _ in range(2)]
    assert draw[0] == draw[1]
    rng = np.random.default_rng(0)
    assert all(sample_scene(rng, motion_prob=0.0).motion == "still" for _ in range(50))
    assert all(sample_scene(rng, motion_prob=1.0).motion != "still" for _ in range(50))
    scenes = [sample_scene(rng) for _ in range(400)]
    assert {s.color for s in scenes} == set(COLORS) and {s.shape for s in scenes} == set(SHAPES)
    assert 0.2 < np.mean([s.motion != "still" for s in scenes]) < 0.4


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda s: render_frame(s, t=1.5), "t must be in"),
        (lambda s: render_frame(s, size=0), "size must be >= 1"),
        (lambda s: render_clip(s, num_frames=0), "num_frames must be >= 1"),
        (lambda s: render_clip(s, noise=-0.1), "noise must be >= 0"),
        (lambda s: sample_scene(np.random.default_rng(0), motion_prob=2), "motion_prob must be in"),
        (lambda s: shape_coverage("blob", 1, 1, 1, 4, 4), "unknown shape 'blob'"),
    ],
)
def test_bad_arguments_raise(call, message):
    with pytest.raises(ValueError, match=message):
        call(Scene("circle", "red", "small", "black", "left"))


def test_render_clip_without_motion_is_unchanged_by_the_new_parameter():
    scene = Scene("square", "blue", "large", "gray", "right", "drifting left")
    assert np.array_equal(render_clip(scene, 6), render_clip(scene, 6, motion=None))


@pytest.mark.parametrize("speed", [0.0, 0.125, 0.25, 0.5])
@pytest.mark.parametrize("dx, dy", [(1, 0), (-1, 0), (0, 1), (0, -1)])
def test_motion_moves_the_centroid_at_the_requested_speed(speed, dx, dy):
    scene = Scene("circle", "white", "small", "black", "center")
    clip = render_clip(scene, 16, motion=Motion(dx=dx * speed, dy=dy * speed))
    centroid = _centroid(clip)
    np.testing.assert_allclose((centroid[-1] - centroid[0]) / 15, [dx * speed, dy * speed], atol=0.005)
    steps = np.diff(centroid, axis=0)  # each step within the 1/4 px of the 4x supersampling
    np.testing.assert_allclose(steps, np.tile([dx * speed, dy * speed], (15, 1)), atol=0.07)


def test_motion_speed_scales_with_the_frame_size():
    scene = Scene("square", "white", "small", "black", "center")
    centroid = _centroid(render_clip(scene, 8, size=64, motion=Motion(dx=0.25)))
    assert (centroid[-1, 0] - centroid[0, 0]) / 7 == pytest.approx(0.5, abs=0.005)


@pytest.mark.parametrize("grow", [0.1, -0.1])
def test_growth_changes_the_size_monotonically(grow):
    scene = Scene("square", "white", "large", "black", "center")
    clip = render_clip(scene, 12, motion=Motion(grow=grow))
    area = clip[..., 0].sum(axis=(1, 2))
    assert (np.diff(area) * np.sign(grow) >= 0).all() and area[-1] != area[0]  # steps of the 4x supersampling
    half = np.sqrt(area / 4.0)  # square: area = (2r)^2
    assert half[-1] - half[0] == pytest.approx(11 * grow, abs=0.15)
    assert half[[0, -1]].mean() == pytest.approx(SIZES["large"], abs=0.1)  # centred on the scene's size


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("motion", [Motion(dx=2.0), Motion(dx=-1.5, dy=1.7), Motion(dy=-3.0, grow=0.05),
                                    Motion(dx=0.5, center=(0.0, 1.0))])
def test_moving_shapes_bounce_and_stay_inside_the_frame(shape, motion):
    scene = Scene(shape, "white", "large", "black", "left")
    clip = render_clip(scene, 24, motion=motion)
    area = clip[..., 0].sum(axis=(1, 2))
    path = motion_path(scene, motion, 24)
    assert (path[:, :2] >= path[:, 2:]).all() and (path[:, :2] <= 32 - path[:, 2:]).all()
    # the same shape drawn 16 px in from every edge of a 64 px canvas: nothing of it is cut off there
    uncut = [shape_coverage(shape, x + 16, y + 16, r, 64, 64).sum() for x, y, r in path]
    np.testing.assert_allclose(area, uncut, rtol=1e-5)  # nothing cut off by the frame edge
    np.testing.assert_allclose(area, _AREA_PER_R2[shape] * path[:, 2] ** 2, rtol=0.06)
    speed = np.hypot(motion.dx, motion.dy) + 2 * abs(motion.grow)  # a bounce off a growing shape adds grow
    assert np.abs(np.diff(_centroid(clip), axis=0)).max() <= speed + 0.3


def test_moving_clips_keep_a_clean_uniform_background():
    scene = Scene("triangle", "yellow", "small", "navy", "right")
    clip = render_clip(scene, 16, motion=Motion(dx=-0.5, dy=0.25, grow=0.05))
    assert all(is_clean(frame) for frame in clip)
    corner = clip[:, :2, :2].reshape(-1, 3)
    assert np.allclose(corner, BACKGROUNDS["navy"])
    one_colour = np.isclose(clip, COLORS["yellow"]).all(-1) | np.isclose(clip, BACKGROUNDS["navy"]).all(-1)
    assert one_colour.mean() > 0.9  # only anti-aliased edge pixels blend the two colours


@pytest.mark.parametrize("num_frames", [8, 16, 24])
def test_sampled_clips_are_one_state_and_their_captions_stay_true(num_frames):
    rng = np.random.default_rng(num_frames)
    speeds, growing, omitted = set(), 0, 0
    for _ in range(40):
        scene, motion, must_omit = sample_clip(rng, num_frames)
        assert must_omit in ((), ("position",))
        omitted += bool(must_omit)
        speeds.add(round(float(np.hypot(motion.dx, motion.dy)), 3))
        growing += motion.grow != 0
        clip = render_clip(scene, num_frames, motion=motion)
        keys = ("color", "shape", "size", "background") + (() if must_omit else ("position",))
        for state in classify_clip(clip):
            assert all(getattr(state, k) == getattr(scene, k) for k in keys), (scene, motion, state)
        assert all(is_clean(frame) for frame in clip)
        words = caption(scene, omit=must_omit)
        if motion.dx > 0:
            assert words.endswith("drifting right")
        elif motion.dx < 0:
            assert words.endswith("drifting left")
        assert parse_caption(words).color == scene.color and parse_caption(words).shape == scene.shape
    assert speeds == {round(v, 3) for v in SPEEDS.values()}  # every speed is drawn
    assert growing > 0 and (omitted > 0 or num_frames < 24)


def test_sampled_paths_do_not_bounce():
    rng = np.random.default_rng(5)
    for _ in range(100):
        scene, motion, _ = sample_clip(rng, 24)
        centroid = _centroid(render_clip(Scene("circle", "white", scene.size, "black", scene.position),
                                         24, motion=motion))  # a circle: centroid = box centre
        np.testing.assert_allclose((centroid[-1] - centroid[0]) / 23, [motion.dx, motion.dy], atol=0.01)
        steps = np.diff(centroid, axis=0)
        assert (steps * np.sign([motion.dx, motion.dy]) >= -0.01).all()  # never turns back


def test_sample_clip_is_seeded():
    assert sample_clip(np.random.default_rng(3), 16) == sample_clip(np.random.default_rng(3), 16)
    with pytest.raises(ValueError, match="num_frames must be >= 1"):
        sample_clip(np.random.default_rng(0), 0)
    with pytest.raises(ValueError, match="grow_prob must be in"):
        sample_clip(np.random.default_rng(0), 8, grow_prob=1.5)
