"""Where the release tests put venv tarballs: a directory, or a prefix of moto's S3.

moto in server mode stands in for S3 (conditional puts and checksums as DESIGN.md lists);
the directory is the local store `upload_all.py` and `run_venv.py` also accept.
"""

from __future__ import annotations

from pathlib import Path

from conftest import aws_env, new_bucket, s3_client


class Store:
    """A store of one kind ("dir" or "s3"): its URI, the environment a script needs to reach
    it, and what is there (keys relative to the `venvs` prefix, digests' sidecars left out)."""

    def __init__(self, kind: str, root: Path, moto: dict[str, str] | None) -> None:
        self.kind, self.moto = kind, moto
        if kind == "s3":
            assert moto is not None
            self.bucket = new_bucket(moto)
            self.uri = f"s3://{self.bucket}/venvs"
            self.env = aws_env(moto)
        else:
            self.uri = str(root / "artifacts")
            self.env = aws_env({})

    def where(self, name: str) -> str:
        return f"{self.uri}/{name}"

    def read(self, name: str) -> bytes:
        if self.kind == "s3":
            obj = s3_client(self.moto).get_object(Bucket=self.bucket, Key=f"venvs/{name}")
            return obj["Body"].read()
        return (Path(self.uri) / name).read_bytes()

    def keys(self) -> list[str]:
        if self.kind == "s3":
            listed = s3_client(self.moto).list_objects_v2(Bucket=self.bucket)
            return sorted(obj["Key"].removeprefix("venvs/") for obj in listed.get("Contents", []))
        root = Path(self.uri)
        if not root.exists():
            return []
        return sorted(
            p.relative_to(root).as_posix()
            for p in root.rglob("*")
            if p.is_file() and not p.name.endswith(".sha256")
        )
