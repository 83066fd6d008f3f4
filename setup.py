"""Ships the top-level `sql/` folder (migrations and example reports) inside the wheel as
`dialer/sql/`, so an installed `dialer migrate` finds it; `sql/` stays the one source."""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildWithSql(build_py):
    def run(self) -> None:
        super().run()
        source = Path(__file__).resolve().parent / "sql"
        target = Path(self.build_lib) / "dialer" / "sql"
        for path in sorted(source.rglob("*")):
            if path.is_file() and path.suffix in (".sql", ".md"):
                self.mkpath(str((target / path.relative_to(source)).parent))
                self.copy_file(str(path), str(target / path.relative_to(source)), preserve_mode=0)


setup(cmdclass={"build_py": BuildWithSql})
