#!/usr/bin/env python3
"""run_valgrind.py -- the C test executables of a build under valgrind memcheck.

    python3 tests/valgrind/run_valgrind.py [-j N] [--suite S ...] [BUILD_DIR]

Runs every test of the chosen meson suites (default: unit, api, reliability,
fuzz) whose command is a program of the build (tests run through python or
bash are skipped: valgrind would check the interpreter), with the test's
environment, under

    valgrind --leak-check=full --errors-for-leak-kinds=definite,indirect,possible
             --error-exitcode=99 --suppressions=tests/valgrind/libmtl.supp

so that any memory error or any leak fails the test.  BUILD_DIR must be a
build without sanitizers (default: build).  Prints one line per test and
last "valgrind: N passed, N failed"; exit status 1 if any failed.  Valgrind's
reports go to BUILD_DIR/meson-logs/valgrind/TEST.PID.log (one per process:
children the tests spawn run under valgrind too), the test's own output to
TEST.out.  See docs/testing.md.
"""
import argparse
import concurrent.futures
import glob
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def is_elf(path):
    try:
        with open(path, 'rb') as f:
            return f.read(4) == b'\x7fELF'
    except OSError:
        return False


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('build', nargs='?', default='build')
    ap.add_argument('-j', type=int, default=os.cpu_count() or 2, help='tests run at once')
    ap.add_argument('--suite', action='append', help='meson suite (repeatable)')
    ap.add_argument('--timeout', type=int, default=1800, help='seconds per test')
    args = ap.parse_args()
    suites = set(args.suite or ['unit', 'api', 'reliability', 'fuzz'])

    out = subprocess.run(['meson', 'introspect', '--tests', args.build], check=True, capture_output=True, text=True)
    tests = []
    build_abs = os.path.abspath(args.build) + os.sep
    for t in json.loads(out.stdout):
        names = {s.split(':')[-1] for s in t['suite']}
        exe = os.path.abspath(t['cmd'][0])
        if names & suites and exe.startswith(build_abs) and is_elf(exe):
            tests.append(t)
    if not tests:
        print('valgrind: no test selected')
        print('valgrind: 0 passed, 1 failed')
        return 1
    built = subprocess.run(['ninja', '-C', args.build] + [os.path.relpath(t['cmd'][0], args.build) for t in tests],
                           capture_output=True, text=True)
    if built.returncode != 0:
        print((built.stdout + built.stderr)[-3000:])
        print('valgrind: build failed')
        print('valgrind: 0 passed, %d failed' % len(tests))
        return 1
    logdir = os.path.join(args.build, 'meson-logs', 'valgrind')
    os.makedirs(logdir, exist_ok=True)
    supp = os.path.join(HERE, 'libmtl.supp')

    def run(t):
        log = os.path.join(logdir, t['name'] + '.log')
        for old in glob.glob(os.path.join(logdir, t['name'] + '.*.log')):
            os.remove(old)
        env = dict(os.environ)
        env.update(t['env'])
        # Children the tests spawn (crash-during-save, resume in a fresh
        # process) run under valgrind too: valgrind's CPU makes BLIS pick
        # other kernels than the bare CPU, so a resumed run would otherwise
        # differ from its parent in the last bits.  Shell tools are skipped.
        cmd = ['valgrind', '--tool=memcheck', '--leak-check=full', '--show-leak-kinds=definite,indirect,possible',
               '--errors-for-leak-kinds=definite,indirect,possible', '--error-exitcode=99',
               '--track-origins=yes', '--num-callers=30', '--suppressions=' + supp,
               '--trace-children=yes', '--trace-children-skip=*/sh,*/bash,*/dash,*/rm,*/localedef,*/gzip',
               '--log-file=' + os.path.abspath(log[:-4]) + '.%p.log'] + t['cmd']
        start = time.time()
        try:
            p = subprocess.run(cmd, env=env, cwd=t.get('workdir') or args.build, capture_output=True, text=True,
                               timeout=args.timeout)
            rc = p.returncode
            with open(log[:-4] + '.out', 'w') as f:
                f.write(p.stdout + p.stderr)
        except subprocess.TimeoutExpired:
            rc = 'timeout'
        took = time.time() - start
        # one log per process: the test's and its children's (a child killed
        # on purpose leaves no summary)
        n_errors, n_logs = 0, 0
        for path in sorted(glob.glob(os.path.join(logdir, t['name'] + '.*.log'))):
            n_logs += 1
            with open(path) as f:
                for line in f:
                    if 'ERROR SUMMARY:' in line:
                        n_errors += int(line.split('ERROR SUMMARY:')[1].split()[0])
        if n_errors and rc == 0:
            rc = 99  # a child's errors
        summary = '%d errors in %d process%s' % (n_errors, n_logs, '' if n_logs == 1 else 'es')
        return t['name'], rc, took, summary, log[:-4] + '.*.log'

    passed = failed = 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.j) as ex:
        for name, rc, took, summary, log in ex.map(run, tests):
            if rc == 0:
                passed += 1
                print('ok    %-26s %6.1f s  %s' % (name, took, summary))
            else:
                failed += 1
                why = 'memcheck errors or leaks' if rc == 99 else 'exit %s' % rc
                print('FAIL  %-26s %6.1f s  %s (%s); log: %s' % (name, took, summary, why, log))
            sys.stdout.flush()
    print('valgrind: %d passed, %d failed' % (passed, failed))
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
