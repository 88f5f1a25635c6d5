"""The program that runs one assert-style test of a `code` sample inside the
sandbox. rewards.code sends this file's text as /sandbox/main.py and the
test, already rewritten by rewards.assert_rewrite, on stdin; the hub does not
import it. Standard library only (it runs on the sandbox's Python).

Why not append the test to the program and call exit status 0 a pass: a
program that calls `sys.exit(0)` or `os._exit(0)` (or exits from an atexit
hook, or swaps `sys.excepthook`) ends with status 0 without ever running the
test, and an object whose `__eq__` returns True satisfies `assert f(x) == y`.
Here a test passes only when the harness itself writes, after the test code
returned normally, a per-run secret the hub sent on stdin (read, with the test
source, before the program runs). So:

- ending early, by any route, never prints the secret: the run fails;
- every verdict is computed by builtin operations on plain data. The test is
  rewritten (rewards.assert_rewrite, on the hub) so that the operands of
  comparisons, arithmetic, `not`, `and`/`or`, the asserted value and the
  arguments of the builtins that compare or judge (bool, abs, max, min, all,
  any, round, math.isclose, operator.*) must be exact builtin types (int,
  float, complex, bool, str, bytes, None, Decimal, and list/tuple/dict/set/
  frozenset/deque of those; Fraction, Counter and namedtuples while their
  classes are untouched); anything else fails the test. A user object never
  sees the expected value and never decides a verdict;
- the test runs with the builtins and the already imported modules as they
  were before the program ran (monkeypatching `builtins`, `math.isclose` or
  `AssertionError` has no effect on the test), and user names that shadow a
  builtin are not visible to it;
- an audit hook, installed before the program runs and impossible to remove,
  refuses the routes to the secret in this process's memory: frame and gc
  introspection, ctypes, tracing hooks, /proc/*/mem; and the process is made
  non-dumpable, so programs it starts (which do not carry the hook) cannot
  read its memory or ptrace it (where that fails, starting them is refused).

What it does not stop (docs/sandbox.md): a program that defeats the audit
hook by a route it does not list could read the secret; a user object whose
*methods* return a verdict the test trusts (`assert obj.startswith("ab")`).
"""
import builtins
import json
import os
import sys
import types

# Imported before the program runs, so that their state is restored before
# the test and their classes are the real ones (kept few: each run pays them).
import bisect, collections, decimal, fractions, functools, heapq, itertools, math, operator, string  # noqa

_CMP_OPS = {"Eq": operator.eq, "NotEq": operator.ne, "Lt": operator.lt, "LtE": operator.le,
            "Gt": operator.gt, "GtE": operator.ge, "In": lambda a, b: a in b, "NotIn": lambda a, b: a not in b}
_BIN_OPS = {"Add": operator.add, "Sub": operator.sub, "Mult": operator.mul, "Div": operator.truediv,
            "FloorDiv": operator.floordiv, "Mod": operator.mod, "Pow": operator.pow, "LShift": operator.lshift,
            "RShift": operator.rshift, "BitOr": operator.or_, "BitXor": operator.xor, "BitAnd": operator.and_,
            "MatMult": operator.matmul}


class _NotPlain(Exception):
    pass


class _Failed(Exception):
    pass


def _checks():
    """The helpers the rewritten test calls. Everything they use is bound
    now, before the program can patch builtins or modules."""
    _type, _bool, _id, _set, _zip, _len, _vars = type, bool, id, set, zip, len, vars
    # Exact types whose comparisons cannot run user code: builtins and the
    # standard library's C value types; Fraction and Counter (Python classes)
    # only while their class dictionaries are as we found them.
    scalars = (int, float, complex, bool, str, bytes, type(None), decimal.Decimal)
    seqs = (list, tuple, set, frozenset, collections.deque)
    maps = (dict, collections.OrderedDict, collections.defaultdict)
    Fraction, Counter = fractions.Fraction, collections.Counter
    frozen = {cls: dict(vars(cls)) for cls in (Fraction, Counter)}
    tuplegetter = type(vars(collections.namedtuple("_T", "a"))["a"])
    namedtuple_keys = frozenset(vars(collections.namedtuple("_T", "a"))) - {"a"}
    heap_type = 1 << 9  # Py_TPFLAGS_HEAPTYPE
    builtin_classes = tuple(v for v in vars(builtins).values() if _type(v) is type)
    # Builtins that compare their arguments with each other or turn one into a
    # verdict: given a user object they would call its __eq__/__lt__ with the
    # expected value, or let its __bool__/__abs__ decide. Other builtins (len,
    # str, int, list, sorted, isinstance...) may take user objects: what they
    # return is checked where a verdict uses it.
    verdict_fns = (bool, abs, max, min, all, any, round, divmod, pow, math.isclose, math.fabs,
                   *[v for k, v in vars(operator).items() if callable(v) and not k.startswith("_")])
    cmp_ops, bin_ops, not_plain, failed = dict(_CMP_OPS), dict(_BIN_OPS), _NotPlain, _Failed

    def one_of(t, types_):
        for s in types_:
            if t is s:
                return True
        return False

    def untouched(cls):
        state, now = frozen[cls], _vars(cls)
        if _len(now) != _len(state):
            return False
        for k, v in state.items():
            if now.get(k) is not v:
                return False
        return True

    def namedtuple_like(t):
        """A class made by collections.namedtuple and left alone: it compares,
        hashes and iterates exactly as a tuple."""
        if _type(t) is not type or _len(t.__bases__) != 1 or t.__bases__[0] is not tuple:
            return False
        fields = _vars(t).get("_fields")
        if _type(fields) is not tuple:
            return False
        for k, v in _vars(t).items():
            if _type(k) is not str:
                return False
            if k in namedtuple_keys or (k in fields and _type(v) is tuplegetter):
                continue
            return False
        return True

    def is_plain(x):
        stack, seen = [x], _set()
        while stack:
            v = stack.pop()
            t = _type(v)
            if one_of(t, scalars) or one_of(v, builtin_classes) or _id(v) in seen:
                continue
            seen.add(_id(v))
            if one_of(t, seqs) or namedtuple_like(t):
                stack.extend(v)
            elif one_of(t, maps) or (t is Counter and untouched(Counter)):
                stack.extend(dict.keys(v))
                stack.extend(dict.values(v))
            elif t is Fraction and untouched(Fraction):
                stack.append(v._numerator)
                stack.append(v._denominator)
            else:
                return False
        return True

    def plain(x):
        if not is_plain(x):
            raise not_plain(f"{_type(x).__name__} is not a plain builtin value")
        return x

    def cmp(ops, left, *rights):
        for op, right in _zip(ops, rights):
            if op == "Is":
                ok = left is right
            elif op == "IsNot":
                ok = left is not right
            else:
                ok = cmp_ops[op](plain(left), plain(right))
                if _type(ok) is not bool:
                    raise not_plain("comparison did not give a bool")
            if not ok:
                return False
            left = right
        return True

    def binop(op, left, right):
        return bin_ops[op](plain(left), plain(right))

    def not_(x):
        return not plain(x)

    def fixed(x):
        """Plain, or of a type implemented in C (a static type: generators,
        map/zip/range objects, dict views, itertools): its methods are not the
        program's. What it yields is checked where a verdict uses it."""
        return is_plain(x) or not (_type(x).__flags__ & heap_type)

    def call(fn, /, *args, **kwargs):
        if one_of(fn, verdict_fns):
            for a in (*args, *kwargs.values()):
                if not fixed(a):
                    raise not_plain(f"{_type(a).__name__} passed to {fn.__name__}")
        return fn(*args, **kwargs)

    def assert_(value):
        if not _bool(plain(value)):
            raise failed("assertion failed")

    return {"_asy_cmp": cmp, "_asy_bin": binop, "_asy_not": not_, "_asy_plain": plain,
            "_asy_call": call, "_asy_assert": assert_}


def _not_dumpable():
    """prctl(PR_SET_DUMPABLE, 0): other processes of the sandbox's uid (a
    program this one starts) can then neither read our memory through
    /proc/PID/mem nor ptrace us. ctypes is then dropped, and the guard
    refuses it from here on. False where that could not be done."""
    try:
        import ctypes

        ok = ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0) == 0
    except (ImportError, OSError, AttributeError):
        ok = False
    for name in [n for n in sys.modules if n == "ctypes" or n.startswith(("ctypes.", "_ctypes"))]:
        del sys.modules[name]
    return ok


def _install_guard(allow_exec):
    """Refuse, for the rest of the process, the routes to this process's
    memory (where the secret is). sys._getframe raises ValueError, which the
    standard library already treats as "no caller frame" (logging, typing,
    namedtuple), so honest programs that use those keep working. Starting
    other programs is allowed only when they cannot read our memory."""
    realpath, basename, fsdecode = os.path.realpath, os.path.basename, os.fsdecode
    _isinstance, _str, _bytes = isinstance, str, bytes
    deny_prefix = ("ctypes.", "gc.get_", "sys._current_", "sys.settrace", "sys.setprofile")
    if not allow_exec:
        deny_prefix += ("os.exec", "os.posix_spawn", "os.spawn", "os.system", "os.forkpty", "subprocess.", "pty.")
    deny_import = {"ctypes", "_ctypes", "_xxsubinterpreters", "_testcapi", "_testinternalcapi"}
    if not allow_exec:
        deny_import.add("_posixsubprocess")
    busy = []

    def hook(event, args):
        if busy:
            return
        if event == "sys._getframe":
            raise ValueError("call stack is not inspectable here")
        if event.startswith(deny_prefix):
            raise RuntimeError(f"{event} is not allowed in a scored program")
        if event == "object.__getattr__" and _isinstance(args[1], _str) and ("frame" in args[1] or args[1].startswith("f_")):
            raise RuntimeError(f"{args[1]} is not allowed in a scored program")
        if event == "import" and args[0].split(".")[0] in deny_import:
            raise ImportError(f"{args[0]} is not allowed in a scored program")
        if event == "open" and _isinstance(args[0], (_str, _bytes)):
            path = fsdecode(args[0])
            busy.append(1)
            try:
                real = realpath(path)
            finally:
                busy.pop()
            if basename(path) in ("mem", "map_files") or (real.startswith("/proc/") and
                                                           (basename(real) in ("mem", "map_files") or "/map_files" in real)):
                raise PermissionError(f"{path} is not allowed in a scored program")

    sys.addaudithook(hook)


def _read_stdin():
    chunks = []
    while True:
        chunk = os.read(0, 1 << 16)
        if not chunk:
            return json.loads(b"".join(chunks))
        chunks.append(chunk)


def main():
    # Bound now: the program may replace any of these names before we need them.
    write, exit_, type_, dict_, vars_, exec_, str_ = os.write, os._exit, type, dict, vars, exec, str
    modules, stdout = sys.modules, sys.stdout

    def fail(why):
        try:
            stdout.flush()
        except BaseException:
            pass
        try:
            write(2, ("\n[harness] test failed: " + why + "\n").encode("utf-8", "replace"))
        finally:
            exit_(1)

    payload = _read_stdin()
    nonce, program, test = payload["nonce"].encode(), payload["code"], payload["test"]
    del payload
    try:
        test_code = compile(test, "<test>", "exec")
    except SyntaxError as err:
        fail(f"the test does not compile: {err}")
    del test
    allow_exec = _not_dumpable()
    pristine_builtins = dict_(vars_(builtins))
    pristine_modules = [(name, mod, dict_(vars_(mod))) for name, mod in list(modules.items())
                        if type(getattr(mod, "__dict__", None)) is dict]
    checks = _checks()
    _install_guard(allow_exec)

    user = types.ModuleType("__main__")
    user.__file__ = "/sandbox/main.py"
    modules["__main__"] = user
    try:
        exec_(compile(program, "/sandbox/main.py", "exec"), vars_(user))
    except BaseException as err:  # SystemExit included: the test never ran
        fail("the program raised " + type_(err).__name__ + " before the test ran")

    # Undo the program's changes to builtins and to the modules loaded before it.
    vars_(builtins).update(pristine_builtins)
    for name, mod, state in pristine_modules:
        modules[name] = mod
        vars_(mod).update(state)
    modules["__main__"] = user
    # exact str names only: a str subclass key could answer `in` one way here
    # and the test's name lookup another
    namespace = {k: v for k, v in vars_(user).items() if type_(k) is str_ and k not in pristine_builtins}
    namespace.update(checks, __name__="__main__", __builtins__=dict_(pristine_builtins))
    try:
        exec_(test_code, namespace)
    except BaseException as err:
        try:
            why = type_(err).__name__ + ": " + str_(err)[:300]
        except BaseException:
            why = type_(err).__name__
        fail(why)
    try:
        stdout.flush()
    except BaseException:
        pass
    write(1, b"\n" + nonce + b"\n")
    exit_(0)


if __name__ == "__main__":
    main()
