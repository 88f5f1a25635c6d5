"""The verdict process of an assert-style code test: runs the test's code
and decides pass or fail, without ever running the program's code.

The program runs in another sandboxed process (rewards.harness.program).
Here, each name the test uses that the program defines is bound to what the
program process answers about it (rewards.harness.wire): plain data, rebuilt
from this process's own classes, or a handle (`Handle`), whose calls,
attributes, items, iteration, `len`, `bool` and `str` are requests to the
program process and whose answers are again plain data or handles. So every
comparison, `==`, `in`, `isinstance`, `math.isclose`, `assertEqual`, `all`,
`sorted`... runs here on values whose types are this process's builtins; no
object of the program ever receives the expected value, and nothing the
program does can reach this process's memory, its modules or its output.
The verdicts go to a pipe only this process holds, one JSON line per test.

Which names the test sees, in order: what the test and its imports define;
the builtins (a program that defines `len` does not change the test's
`len`); a standard-library module of that name (a program's `math` is never
asked for); a name the program binds by importing from a module of pure
functions (`from math import isclose`; read from its source with `ast`,
never run), taken from this process's own copy; then the program's own
names, asked of the program process. The program never chooses which of this
process's functions a name calls. A test that uses as a *checker* a name
only the program defines lets the program answer for itself: tests should
import what they use.

A test passes when its code returns normally (for HumanEval-style tests,
also `check(candidate)` with the program's `entry_point`; `unittest`
TestCase classes the test defines are run too) and the program process
stayed sound throughout: a program that exited, hung past the test's time,
crashed or broke the protocol fails the test even if the test caught the
exception that said so.
"""
import ast
import builtins
import json
import os
import select
import sys
import time
import types

from .wire import Encoder, MAX_LINE, dumps, loads, resolve_stdlib, stdlib_name


class ProgramBroken(BaseException):
    """The program process exited, hung, crashed or sent something unreadable;
    a BaseException so `except Exception` in a test does not swallow it."""


class TestCannotRun(Exception):
    """The test itself cannot run here (not the program's fault)."""


class ProgramError(Exception):
    """An exception of a type this process does not have, raised by the program."""


class State:
    def __init__(self, req_fd, resp_fd, verdict_fd):
        self.req_fd, self.resp_fd, self.verdict_fd = req_fd, resp_fd, verdict_fd
        self.buf = bytearray()
        self.deadline = float("inf")
        self.broken = None
        self.timed_out = False
        self.entry = None  # the program's entry_point (HumanEval's candidate)
        self.handles = {}
        self.types = {}
        self.exc_classes = {}
        self.exc_ids = {}
        self.encoder = Encoder(self.tag)

    # ---- the channel -----------------------------------------------------
    def send(self, message):
        """Write one message; the pipe is non-blocking, so a program that
        stops reading costs the test its time, not this process its life."""
        data = memoryview(dumps(message).encode())
        while data:
            left = self.deadline - time.monotonic()
            if left <= 0:
                self.timed_out = True
                self.fail("the program did not read the test's request within the test's time")
            _, ready, _ = select.select([], [self.req_fd], [], left)
            if ready:
                try:
                    data = data[os.write(self.req_fd, data[:1 << 16]):]
                except BlockingIOError:
                    continue
                except OSError:
                    self.fail("the program process ended")

    def recv(self):
        while True:
            nl = self.buf.find(b"\n")
            if nl >= 0:
                line = bytes(self.buf[:nl])
                del self.buf[:nl + 1]
                try:
                    message = loads(line, self.handle)
                except (ValueError, TypeError, RecursionError, MemoryError) as err:
                    self.fail("the program process sent an unreadable answer (" + type(err).__name__ + ")")
                if type(message) is not list or not message or type(message[0]) is not str:
                    self.fail("the program process sent a malformed answer")
                return message
            if len(self.buf) > MAX_LINE:
                self.fail("the program process sent an answer over " + str(MAX_LINE) + " bytes")
            left = self.deadline - time.monotonic()
            if left <= 0:
                self.timed_out = True
                self.fail("the program did not answer within the test's time")
            ready, _, _ = select.select([self.resp_fd], [], [], left)
            if ready:
                chunk = os.read(self.resp_fd, 1 << 20)
                if not chunk:
                    self.fail("the program process ended")
                self.buf += chunk

    def fail(self, why):
        if self.broken is None:
            self.broken = why
        raise ProgramBroken(self.broken)

    # ---- values ----------------------------------------------------------
    def handle(self, tag):
        """The object a tagged value from the program process stands for: a
        handle, or an exception class made here. Never an object of this
        process that the program names (a standard-library function or
        module): the program would choose what this process runs, and with
        which of its answers (`eval`, `unittest.mock.ANY`)."""
        if "$exc" in tag:
            return self.exception_class(tag)
        h = tag.get("$h")
        if type(h) is not int:
            raise ValueError("bad handle")
        if h not in self.handles:
            self.handles[h] = Handle(self, h)
            self.types[h] = str(tag.get("t", "object"))[:100]
        return self.handles[h]

    def exception_class(self, tag):
        h, name, base = tag.get("$exc"), tag.get("n"), tag.get("b")
        if type(h) is not int or type(name) is not str or not name.isidentifier():
            raise ValueError("bad exception class")
        if h not in self.exc_classes:
            parent = getattr(builtins, base, None) if type(base) is str else None
            if not (isinstance(parent, type) and issubclass(parent, Exception)):
                parent = ProgramError
            cls = type(name, (parent,), {"__module__": "program"})
            self.exc_classes[h] = cls
            self.exc_ids[cls] = h
        return self.exc_classes[h]

    def tag(self, x):
        """How a value of the test crosses to the program: a handle goes back
        as its number, a standard-library object by name; nothing else."""
        if type(x) is Handle:
            return {"$h": object.__getattribute__(x, "_h")}
        if isinstance(x, type) and x in self.exc_ids:
            return {"$h": self.exc_ids[x]}
        std = stdlib_name(x)
        if std is not None:
            return {"$std": std}
        raise TestCannotRun("the test passes a " + type(x).__name__ + " to the program; only plain values, "
                            "the program's own objects and standard-library functions can cross")

    def rpc(self, op, *args):
        if self.broken is not None:
            raise ProgramBroken(self.broken)
        self.send([op, *[self.encoder.encode(a) for a in args]])
        reply = self.recv()
        if reply[0] == "ok" and len(reply) in (2, 3):
            return reply
        if reply[0] == "raise" and len(reply) == 6:
            err = self.exception(*reply[1:])
            if isinstance(err, (StopIteration, StopAsyncIteration)) and op != "next":
                # only `next` may end an iteration: from a call it would end the test's
                # map()/filter() early, as if every item had been checked
                err = ProgramError("the program raised " + type(err).__name__)
            raise err
        self.fail("the program process answered out of turn")

    def exception(self, name, base, message, cls, fatal):
        if type(name) is not str or type(message) is not str:
            self.fail("the program process sent a malformed exception")
        if fatal is not False:
            self.fail("the program raised " + name[:100] + " (it ends the program)")
        if not (isinstance(cls, type) and issubclass(cls, Exception)):
            cls = getattr(builtins, base, None) if type(base) is str else None
            if not (isinstance(cls, type) and issubclass(cls, Exception)):
                cls = ProgramError
        try:
            return cls(message)
        except Exception:
            return ProgramError(name[:100] + ": " + message)

    def call(self, fn, args, kwargs):
        reply = self.rpc("call", fn, list(args), [[k, v] for k, v in kwargs.items()])
        result, after = reply[1], reply[2] if len(reply) == 3 else []
        if type(after) is not list:
            self.fail("the program process answered out of turn")
        for key, new in after:  # the program changed a container the test passed: so does the test's copy
            old = args[key] if type(key) is int and 0 <= key < len(args) else kwargs.get(key)
            if type(old) is type(new) and type(old) in (list, bytearray):
                old[:] = new
            elif type(old) is type(new) and type(old) in (dict, set):
                old.clear()
                old.update(new)
        return result

    def checked(self, value, *types_):
        if type(value) not in types_:
            self.fail("the program process answered with a " + type(value).__name__)
        return value


class Handle:
    """An object that stays in the program process. Its calls, attributes,
    items, iteration, `len`, `str` and `repr` are requests to it. `==`, `<`
    and arithmetic are not defined here, so a comparison with a handle is this
    process's identity (False against any expected value), `x in handle`
    iterates the handle's plain items, and a handle has no truth value: it
    can never be the verdict itself."""

    __slots__ = ("_state", "_h")

    def __init__(self, state, h):
        object.__setattr__(self, "_state", state)
        object.__setattr__(self, "_h", h)

    def _rpc(self, op, *args):
        return object.__getattribute__(self, "_state").rpc(op, self, *args)[1]

    def __getattr__(self, name):
        return self._rpc("getattr", name)

    def __setattr__(self, name, value):
        self._rpc("setattr", name, value)

    def __delattr__(self, name):
        self._rpc("delattr", name)

    def __call__(self, *args, **kwargs):
        return object.__getattribute__(self, "_state").call(self, args, kwargs)

    def __getitem__(self, key):
        return self._rpc("getitem", key)

    def __setitem__(self, key, value):
        self._rpc("setitem", key, value)

    def __delitem__(self, key):
        self._rpc("delitem", key)

    def __len__(self):
        n = object.__getattribute__(self, "_state").checked(self._rpc("len"), int)
        if n < 0:
            raise ValueError("__len__() should return >= 0")
        return n

    def __bool__(self):  # a verdict: only plain values have truth here
        raise TypeError("an object of the program (" + self._type() + ") has no truth value in a test; "
                        "test a plain value (len(x) == 0, x is None)")

    def _type(self):
        return object.__getattribute__(self, "_state").types.get(object.__getattribute__(self, "_h"), "object")

    def __iter__(self):
        it = self._rpc("iter")
        return it if type(it) is Handle else iter(it)

    def __next__(self):
        return self._rpc("next")

    def __str__(self):
        return object.__getattribute__(self, "_state").checked(self._rpc("str"), str)

    def __repr__(self):
        return object.__getattribute__(self, "_state").checked(self._rpc("repr"), str)

    def __instancecheck__(self, obj):
        state = object.__getattribute__(self, "_state")
        return type(obj) is Handle and state.checked(state.rpc("isinstance", obj, self)[1], bool)

    def __subclasscheck__(self, sub):
        state = object.__getattribute__(self, "_state")
        return type(sub) is Handle and state.checked(state.rpc("issubclass", sub, self)[1], bool)


# ---- the tests ---------------------------------------------------------------
# Modules of pure functions and value types: a name the program imports from
# one of these is taken from this process's own copy. Not the rest of the
# standard library: the program would choose which of this process's
# functions the test's name calls (`from builtins import eval as check`).
PURE_MODULES = frozenset({
    "math", "cmath", "decimal", "fractions", "statistics", "numbers", "random", "collections", "collections.abc",
    "heapq", "bisect", "itertools", "functools", "operator", "string", "re", "typing", "datetime", "calendar",
})


def program_imports(source):
    """{name: [module, attribute]} for the names the program binds at its top
    level by importing from a module of PURE_MODULES, read from its source
    with `ast` (parsed, never compiled or run); attribute "" is the module."""
    names = {}
    try:
        tree = ast.parse(source)
    except BaseException:  # noqa: BLE001  (a program that does not parse fails on its own)
        return names
    stack = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            continue  # their imports bind local names
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in PURE_MODULES:
                    names[alias.asname or alias.name.split(".")[0]] = [alias.name if alias.asname else
                                                                       alias.name.split(".")[0], ""]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module in PURE_MODULES:
            for alias in node.names:
                if alias.name != "*":
                    names[alias.asname or alias.name] = [node.module, alias.name]
        else:
            stack.extend(ast.iter_child_nodes(node))
    return names


def bind(state, ns, wanted, static, entry_point):
    """Put into `ns` the names the test uses and does not define (the order
    of the module docstring)."""
    ask = []
    for name in wanted:
        if name in ns or (name != entry_point and hasattr(builtins, name)):
            continue
        try:
            if name in sys.stdlib_module_names:  # the test's own choice of module: never the program's `math`
                ns[name] = resolve_stdlib([name, ""])
                continue
            if name in static:
                ns[name] = resolve_stdlib(static[name])
                continue
        except (ImportError, AttributeError, ValueError):
            continue  # not in this standard library: left unbound, as the program would have failed
        ask.append(name)
    if not ask:
        return
    pairs = state.rpc("names", ask)[1]
    if type(pairs) is not list:
        state.fail("the program process answered out of turn")
    for pair in pairs:
        if type(pair) is not list or len(pair) != 2 or pair[0] not in ask:
            state.fail("the program process answered out of turn")
        if pair[0] == entry_point:
            state.entry = pair[1]
        if pair[0] not in ns and not hasattr(builtins, pair[0]):
            ns[pair[0]] = pair[1]


def run_unittests(ns):
    """The first failure of the unittest TestCase classes the test defined,
    '' when they all pass, None when it defined none."""
    unittest = sys.modules.get("unittest")
    if unittest is None:
        return None
    cases = [v for v in list(ns.values()) if isinstance(v, type) and issubclass(v, unittest.TestCase)
             and v.__module__ == ns["__name__"]]
    if not cases:
        return None
    result = unittest.TestResult()
    unittest.TestSuite(unittest.defaultTestLoader.loadTestsFromTestCase(c) for c in cases).run(result)
    problems = result.errors + result.failures
    if problems:
        return (problems[0][1].strip().splitlines() or ["failed"])[-1][:300]
    if result.unexpectedSuccesses:
        return "unexpected success"
    return ""


def run_test(state, source, entry_point, imports, static):
    """(verdict, why) of one test: "pass", "fail", "timeout" or "error" (the
    test itself cannot run: not the program's fault)."""
    module = types.ModuleType("__main__")
    ns = vars(module)
    ns["__builtins__"] = builtins
    sys.modules["__main__"] = module
    try:
        for text in imports:
            exec(compile(text, "<test_imports>", "exec"), ns)
        tree = ast.parse(source, "<test>")
        code = compile(tree, "<test>", "exec")
    except BaseException as err:  # noqa: BLE001
        return "error", "the test's own code fails: " + type(err).__name__ + ": " + str(err)[:200]
    wanted = sorted({n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} | ({entry_point} if entry_point else set()))
    why = ""
    try:
        bind(state, ns, wanted, static, entry_point)
        try:
            exec(code, ns)
        except SystemExit as stop:  # unittest.main() in the test: it ran the cases and says how they went
            if stop.code not in (0, None):
                raise AssertionError("the test exited with " + repr(stop.code)[:50]) from None
        else:
            if entry_point:
                check = ns.get("check")
                if not callable(check):
                    return "error", "the test defines no check(candidate) for its entry_point"
                if state.entry is None:
                    raise NameError("the program defines no " + entry_point)
                check(state.entry)
            why = run_unittests(ns) or ""
    except TestCannotRun as err:
        return "error", str(err)[:300]
    except BaseException as err:  # noqa: BLE001  (every way a test can fail)
        try:
            why = type(err).__name__ + ": " + str(err)[:300]
        except BaseException:  # noqa: BLE001  (a message the program wrote)
            why = type(err).__name__
    if state.broken is not None:
        return ("timeout" if state.timed_out else "fail"), state.broken
    return ("fail", why) if why else ("pass", "")


def _read_all(fd):
    chunks = []
    while True:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def main(req_fd, resp_fd, verdict_fd):
    """Run the tests of the payload on stdin; one verdict line per test on
    `verdict_fd`. Stops after a test that left the program process unsound:
    the hub starts a fresh pair for the tests after it."""
    payload = json.loads(_read_all(0))
    os.set_blocking(req_fd, False)
    state = State(req_fd, resp_fd, verdict_fd)
    call_s = float(payload["call_s"])
    static = program_imports(payload["program"])
    entry_point = payload.get("entry_point")
    imports = payload.get("imports") or []

    def verdict(index, outcome, why):
        os.write(verdict_fd, (json.dumps([outcome, index, why]) + "\n").encode())

    state.deadline = time.monotonic() + call_s
    try:
        state.send(imports)
        hello = state.recv()
        if hello[0] != "hello" or len(hello) != 3 or type(hello[2]) is not str:
            state.fail("the program process answered out of turn")
        if hello[1] is not True:
            for index in range(len(payload["tests"])):  # the program never got going: every test fails alike
                verdict(index, "fail", hello[2][:300] or "the program did not start")
            os._exit(0)
    except ProgramBroken:
        verdict(0, "timeout" if state.timed_out else "fail", state.broken)
        os._exit(0)
    for index, source in enumerate(payload["tests"]):
        state.deadline = time.monotonic() + call_s
        outcome, why = run_test(state, source, entry_point, imports, static)
        verdict(index, outcome, why)
        if state.broken is not None:
            break
    os._exit(0)
