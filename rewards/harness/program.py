"""The program process of an assert-style code test: runs the untrusted
program as module `__main__`, then answers the verdict process's requests
about it (look up a name, call, get or set an attribute or item, iterate, len,
str...) over two pipes, one JSON line per message (rewards.harness.wire).

This process holds no secret and decides nothing. Whatever it sends is the
program's answer, whether this server sent it or code the program planted in
it did: the program may patch this module, write to the pipe itself, exit,
hang or crash, and none of it can do more than answer wrongly or not at all.
The verdict is computed by the verdict process, which never runs a line of
the program's code and rebuilds every value from plain data.

What a value crosses as: plain data when its type is exactly a builtin or
standard-library value type (wire.Encoder), else a handle (modules and
functions included): the object stays here and the verdict side holds its
number. Exception classes go with the name of their nearest builtin base,
so the verdict side can make a class of its own to raise and catch.
Arguments the test passes as mutable containers (list, dict, set, bytearray)
come back with the call's answer, so a program that sorts a list in place is
seen to have done so.
"""
import builtins
import os
import sys
import types

from .wire import Encoder, NotPlain, dumps, loads, resolve_stdlib

_MUTABLE = (list, dict, set, bytearray)


class Server:
    def __init__(self, req_fd, resp_fd):
        self.reader = os.fdopen(req_fd, "rb", buffering=1 << 16)
        self.resp_fd = resp_fd
        self.objects = {}
        self.ids = {}
        self.encoder = Encoder(self.tag)
        self.user = None

    # ---- values ----------------------------------------------------------
    def handle_id(self, obj):
        key = id(obj)
        if key not in self.ids:
            self.ids[key] = len(self.objects) + 1
            self.objects[self.ids[key]] = obj
        return self.ids[key]

    def tag(self, x):
        if isinstance(x, type) and issubclass(x, BaseException):
            base = next(c.__name__ for c in x.__mro__ if getattr(builtins, c.__name__, None) is c)
            return {"$exc": self.handle_id(x), "n": str(x.__name__)[:100], "b": base}
        return {"$h": self.handle_id(x), "t": type(x).__name__[:100]}

    def value(self, x):
        try:
            return self.encoder.encode(x)
        except (NotPlain, RecursionError, ValueError, TypeError):
            return self.tag(x)

    def resolve(self, tag):
        if "$h" in tag and tag["$h"] in self.objects:
            return self.objects[tag["$h"]]
        if "$std" in tag:
            return resolve_stdlib(tag["$std"])
        raise ValueError("unknown handle")

    def send(self, message):
        data = dumps(message).encode()
        while data:
            data = data[os.write(self.resp_fd, data):]

    # ---- the program -----------------------------------------------------
    def run_program(self, imports):
        sys.argv = ["/sandbox/main.py"]
        user = types.ModuleType("__main__")
        user.__file__ = "/sandbox/main.py"
        user.__builtins__ = builtins
        sys.modules["__main__"] = user
        self.user = user
        try:
            for source in imports:
                exec(compile(source, "<test_imports>", "exec"), vars(user))
            with open("/sandbox/main.py", encoding="utf-8", errors="replace") as f:
                source = f.read()
            exec(compile(source, "/sandbox/main.py", "exec"), vars(user))
        except BaseException as err:  # SystemExit included: the test never ran
            return "the program raised " + type(err).__name__ + " before the test ran"
        return ""

    # ---- requests --------------------------------------------------------
    def serve(self):
        while True:
            line = self.reader.readline()
            if not line:
                return
            try:
                request = loads(line, self.resolve)
                op, args = request[0], request[1:]
                method = getattr(self, "op_" + op)
            except Exception as err:  # a request this server cannot read: the verdict side's bug
                self.send(["raise", "RuntimeError", "RuntimeError", "bad request: " + repr(err)[:200], None, True])
                continue
            try:
                self.send(method(*args))
            except BaseException as err:
                self.send(self.raised(err))

    def raised(self, err):
        cls = type(err)
        fatal = not isinstance(err, Exception)
        base = next(c.__name__ for c in cls.__mro__ if getattr(builtins, c.__name__, None) is c)
        exc = None if getattr(builtins, cls.__name__, None) is cls else self.tag(cls)
        try:
            message = str(err)[:1000]
        except BaseException:
            message = ""
        return ["raise", cls.__name__[:100], base, message, exc, fatal]

    def op_names(self, names):
        space = vars(self.user)
        return ["ok", [[n, self.value(space[n])] for n in names if type(n) is str and n in space]]

    def op_call(self, fn, args, kwargs):
        kwargs = dict(kwargs)
        result = fn(*args, **kwargs)
        after = [[i, self.value(a)] for i, a in enumerate(args) if type(a) in _MUTABLE]
        after += [[k, self.value(a)] for k, a in kwargs.items() if type(a) in _MUTABLE]
        return ["ok", self.value(result), after]

    def op_getattr(self, obj, name):
        return ["ok", self.value(getattr(obj, name))]

    def op_setattr(self, obj, name, value):
        setattr(obj, name, value)
        return ["ok", None]

    def op_delattr(self, obj, name):
        delattr(obj, name)
        return ["ok", None]

    def op_getitem(self, obj, key):
        return ["ok", self.value(obj[key])]

    def op_setitem(self, obj, key, value):
        obj[key] = value
        return ["ok", None]

    def op_delitem(self, obj, key):
        del obj[key]
        return ["ok", None]

    def op_len(self, obj):
        return ["ok", len(obj)]

    def op_str(self, obj):
        return ["ok", str(obj)]

    def op_repr(self, obj):
        return ["ok", repr(obj)]

    def op_iter(self, obj):
        return ["ok", self.value(iter(obj))]

    def op_next(self, obj):
        return ["ok", self.value(next(obj))]

    def op_isinstance(self, obj, cls):
        return ["ok", isinstance(obj, cls)]

    def op_issubclass(self, sub, cls):
        return ["ok", issubclass(sub, cls)]


def main(req_fd, resp_fd):
    """Serve until the verdict side closes its end. The first message says
    whether the program ran to its end."""
    server = Server(req_fd, resp_fd)
    imports = loads(server.reader.readline() or b"[]", server.resolve)
    why = server.run_program(imports if type(imports) is list else [])
    server.send(["hello", not why, why])
    if not why:
        server.serve()
    os._exit(0)
