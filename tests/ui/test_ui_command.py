"""`vstar ui` before the page is served: the core package without Gradio, and the one-line errors."""

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from vstar.cli import app


def test_the_core_package_and_the_command_line_do_not_import_gradio():
    code = ("import sys\nfrom typer.testing import CliRunner\nimport vstar, vstar.pipeline, vstar.ui.callbacks, "
            "vstar.ui.session\nfrom vstar.cli import app\n"
            "result = CliRunner().invoke(app, ['ui', '--help'])\nassert result.exit_code == 0, result.output\n"
            "print('gradio' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


@pytest.mark.parametrize(("args", "message"), [
    (["--model", "nope"], "error: unknown model 'nope'; choose one of"),
    (["--port", "70000"], "error: --port must be 1-65535, got 70000"),
])
def test_bad_options_fail_in_one_line_before_gradio_loads(args, message):
    result = CliRunner().invoke(app, ["ui", *args])
    assert result.exit_code == 2
    assert result.output.startswith(message) and result.output.count("\n") == 1


def test_without_the_ui_extra_it_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "gradio", None)  # import gradio fails as when it is not installed
    monkeypatch.delitem(sys.modules, "vstar.ui.app", raising=False)
    result = CliRunner().invoke(app, ["ui"])
    assert result.exit_code == 1
    assert result.output == "error: the web page needs Gradio: pip install 'vstar-video[ui]'\n"


def test_a_model_whose_weights_are_not_here_is_refused_with_those_that_are(monkeypatch):
    from vstar.ui import callbacks

    monkeypatch.setattr(callbacks, "weights_available", lambda spec: spec.tiny)
    result = CliRunner().invoke(app, ["ui", "--model", "modelscope"])
    assert result.exit_code == 2
    assert result.output.startswith("error: --model modelscope: its weights are not here; choose one of toy-shapes, ")

