"Shared by the docs and browser tests: one build of the docs site per session, and each test's outcome for its fixtures"
import subprocess, sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / 'tests' / 'artifacts'   # ignored by git: the built site and the browser screenshots, for a person to look at

@pytest.fixture(scope='session')
def docs_build(tmp_path_factory):
    "The site as `make docs` builds it without Quarto (tools/build-docs), into tests/artifacts/site; returns (site, work, result)"
    work = tmp_path_factory.mktemp('docs-work')
    site = ARTIFACTS / 'site'
    r = subprocess.run([sys.executable, str(ROOT / 'tools' / 'build-docs'), '--out', str(site), '--work', str(work)],
                       capture_output=True, text=True, timeout=900, cwd=ROOT)
    return site, work, r

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    "Keep each phase's report on the test item, so a fixture can tell whether its test failed"
    rep = (yield).get_result()
    setattr(item, f'rep_{rep.when}', rep)
