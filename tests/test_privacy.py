"""Nothing the project runs writes outside CODEX_HOME: onnxruntime's telemetry (a device id and an event
database under ~/.cache/Microsoft) is switched off before the embedding model loads."""

import os
import subprocess
import sys


def test_embedding_leaves_nothing_outside_codex_home(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = {key: value for key, value in os.environ.items() if key != "ORT_DISABLE_TELEMETRY"}
    env.update(HOME=str(home), CODEX_HOME=str(tmp_path / "codex"), XDG_CACHE_HOME=str(home / ".cache"))
    script = ("from codex_dreams.settings import load_settings\n"
              "from codex_dreams.enrichment import embed_texts\n"
              "print(len(embed_texts(['a walk by the river'], load_settings())[0]))\n")
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "384"
    written = [str(path.relative_to(home)) for path in home.rglob("*")]
    assert written == [], written
