"""Run one unittest module and print "N passed, N failed, N skipped" like
the C harness.  Exit 1 on failure, 77 (meson: skipped) when every test was
skipped, else 0.   Usage: run_unittest.py MODULE"""
import sys
import unittest

name = sys.argv[1]
suite = unittest.defaultTestLoader.loadTestsFromName(name)
result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)
# Count tests, not subtests: a test with three failing subtests is one failure.
def test_ids(pairs):
    return {getattr(t, "test_case", t).id() for t, _ in pairs}


failed = len(test_ids(result.failures + result.errors)) + len(result.unexpectedSuccesses)
skipped = len(test_ids(result.skipped))
passed = result.testsRun - failed - skipped
print(f"{passed} passed, {failed} failed, {skipped} skipped")
if failed:
    sys.exit(1)
sys.exit(77 if result.testsRun and skipped == result.testsRun else 0)
