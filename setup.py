"""Build hook: generate the gRPC stubs from fedspace/rpc/*.proto with grpcio-tools.

The stubs are build artefacts (never edited, never committed); running protoc from
build_py means every install — wheel, sdist or editable — carries fresh ones.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildWithProtos(build_py):
    def run(self) -> None:
        from grpc_tools import protoc

        root = Path(__file__).parent
        for proto in sorted((root / "fedspace" / "rpc").glob("*.proto")):
            args = [
                "protoc",
                f"-I{root}",
                f"-I{Path(protoc.__file__).parent / '_proto'}",
                f"--python_out={root}",
                f"--pyi_out={root}",
                f"--grpc_python_out={root}",
                str(proto.relative_to(root)),
            ]
            if protoc.main(args) != 0:
                raise RuntimeError(f"protoc failed for {proto}")
        super().run()


setup(cmdclass={"build_py": BuildWithProtos})
