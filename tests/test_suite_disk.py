"""The suite must not fill CI's disk: whole VGG-16 runs are about 2 GB each, so a passing
test's folder is deleted as soon as it ends (pyproject's tmp_path_retention_* settings)."""
import tomllib
from pathlib import Path

pytest_plugins = ["pytester"]

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"

WRITERS = '''
def test_passes(tmp_path):
    (tmp_path / "passed.bin").write_bytes(bytes(1000))

def test_fails(tmp_path):
    (tmp_path / "failed.bin").write_bytes(bytes(1000))
    assert False
'''


def test_passing_tests_leave_no_files_and_failing_ones_keep_theirs(pytester):
    options = tomllib.loads(PYPROJECT.read_text())["tool"]["pytest"]["ini_options"]
    pytester.makeini("[pytest]\n" + "".join(
        f"{key} = {options[key]}\n" for key in ("tmp_path_retention_policy", "tmp_path_retention_count")))
    pytester.makepyfile(test_writers=WRITERS)
    basetemp = pytester.path / "basetemp"
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", f"--basetemp={basetemp}")
    result.assert_outcomes(passed=1, failed=1)
    left = {path.name for path in basetemp.rglob("*.bin")}
    assert left == {"failed.bin"}  # kept to debug the failure; the passing test's file is gone
