"""Build the demo wheel: an extension module linking a private library outside the wheel.

Usage: python demo/build.py OUTDIR
Writes OUTDIR/lib/libgreet.so.1 (the "system" library, found via LD_LIBRARY_PATH)
and OUTDIR/dist/greeter-1.0-<python>-<abi>-linux_<arch>.whl.
"""

from __future__ import annotations

import base64
import hashlib
import pathlib
import subprocess
import sys
import sysconfig
import zipfile

from packaging import tags

HERE = pathlib.Path(__file__).resolve().parent


def _record_row(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def build(out: pathlib.Path) -> pathlib.Path:
    lib_dir, dist_dir, obj_dir = out / "lib", out / "dist", out / "obj"
    for d in (lib_dir, dist_dir, obj_dir):
        d.mkdir(parents=True, exist_ok=True)
    cc = ["gcc", "-shared", "-fPIC", "-O2"]
    subprocess.run(
        [
            *cc,
            "-Wl,-soname,libgreet.so.1",
            f"-Wl,--version-script={HERE / 'src/greet.map'}",
            "-o",
            str(lib_dir / "libgreet.so.1"),
            str(HERE / "src/greet.c"),
        ],
        check=True,
    )
    (lib_dir / "libgreet.so").unlink(missing_ok=True)
    (lib_dir / "libgreet.so").symlink_to("libgreet.so.1")
    ext = obj_dir / ("_greeter" + sysconfig.get_config_var("EXT_SUFFIX"))
    subprocess.run(
        [
            *cc,
            f"-I{sysconfig.get_paths()['include']}",
            "-o",
            str(ext),
            str(HERE / "src/_greeter.c"),
            f"-L{lib_dir}",
            "-lgreet",
        ],
        check=True,
    )
    tag = next(iter(tags.sys_tags()))
    platform = sysconfig.get_platform().replace("-", "_").replace(".", "_")
    wheel_tag = f"{tag.interpreter}-{tag.abi}-{platform}"
    wheel = dist_dir / f"greeter-1.0-{wheel_tag}.whl"
    files = {
        "greeter/__init__.py": b"from ._greeter import hello\n",
        f"greeter/{ext.name}": ext.read_bytes(),
        "greeter-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: greeter\nVersion: 1.0\n",
        "greeter-1.0.dist-info/WHEEL": (
            f"Wheel-Version: 1.0\nGenerator: repairwheel-demo\nRoot-Is-Purelib: false\n"
            f"Tag: {wheel_tag}\n"
        ).encode(),
    }
    record = [_record_row(name, data) for name, data in files.items()]
    record.append("greeter-1.0.dist-info/RECORD,,")
    files["greeter-1.0.dist-info/RECORD"] = ("\n".join(record) + "\n").encode()
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.external_attr = (0o755 if name.endswith(".so") else 0o644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    return wheel


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    print(build(pathlib.Path(sys.argv[1])))
