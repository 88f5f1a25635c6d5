"""The plain-data format between the program process and the verdict process.

One JSON array per line (the message: its kind, then its values); a JSON
object only ever appears as a tagged value. A value is plain data, rebuilt on the receiving
side from its own classes, or a tagged object:

- JSON null, true/false, numbers, strings and arrays are None, bool, int,
  float, str and list (ints of more than 1,000 bits travel as `{"$int":
  hex}`, so neither side converts long decimals, which CPython caps at 4,300
  digits and converts in quadratic time);
- `{"$tuple"|"$set"|"$frozenset"|"$dict"|"$odict"|"$ddict"|"$counter"|
  "$deque"|"$range"|"$bytes"|"$bytearray"|"$complex"|"$decimal"|"$fraction"|
  "$namedtuple": ...}`: the builtin or standard-library value of that type;
- `{"$h": id}`: a handle, an object that stays in the program process (a
  function, a class, a module, an instance of a class the program defined,
  anything not above); `{"$exc": id, "n": name, "b": builtin base}` a handle
  to an exception class, of which the verdict side makes a class of its own;
  `{"$std": [module, qualname]}` a standard-library function or class the
  verdict side passes to the program, which takes its own. The verdict side
  accepts no `$std` from the program: the program would choose which of the
  verdict process's functions run.

Only exact types are plain (`type(x) is int`, not an int subclass): a
subclass could carry the program's `__eq__`. What a value means is decided
by the decoding side's own classes; the sending side only chooses which
plain value it sends.
"""
import base64
import collections
import decimal
import fractions
import importlib
import json
import keyword
import sys
import types

BIG_INT_BITS = 1000
MAX_DEPTH = 400
MAX_LINE = 64 << 20  # bytes of one message the verdict side reads

_SCALARS = (type(None), bool, int, float, str)


class NotPlain(Exception):
    """A value the encoder cannot send as plain data."""


def _names_ok(names):
    return all(type(n) is str and n.isidentifier() and not keyword.iskeyword(n) and not n.startswith("_")
               for n in names)


class Encoder:
    """`encode(x)`: `x` as a JSON-ready tree. `other(x)` is called for what is
    not plain and returns its tagged object, or raises NotPlain."""

    def __init__(self, other):
        self.other = other

    def encode(self, x, depth=0):
        if depth > MAX_DEPTH:
            raise NotPlain("nested too deeply")
        t = type(x)
        if t is int and x.bit_length() > BIG_INT_BITS:
            return {"$int": hex(x)}
        if t in _SCALARS:
            return x
        d = depth + 1
        enc = self.encode
        if t is list:
            return [enc(v, d) for v in x]
        if t is tuple:
            return {"$tuple": [enc(v, d) for v in x]}
        if t is dict:
            return {"$dict": [[enc(k, d), enc(v, d)] for k, v in x.items()]}
        if t is set:
            return {"$set": [enc(v, d) for v in x]}
        if t is frozenset:
            return {"$frozenset": [enc(v, d) for v in x]}
        if t is bytes:
            return {"$bytes": base64.b64encode(x).decode("ascii")}
        if t is bytearray:
            return {"$bytearray": base64.b64encode(bytes(x)).decode("ascii")}
        if t is complex:
            return {"$complex": [x.real, x.imag]}
        if t is range:
            return {"$range": [x.start, x.stop, x.step]}
        if t is decimal.Decimal:
            return {"$decimal": str(x)}
        if t is fractions.Fraction:
            return {"$fraction": [enc(x.numerator, d), enc(x.denominator, d)]}
        if t is collections.OrderedDict:
            return {"$odict": [[enc(k, d), enc(v, d)] for k, v in x.items()]}
        if t is collections.defaultdict:
            return {"$ddict": [[enc(k, d), enc(v, d)] for k, v in x.items()]}
        if t is collections.Counter:
            return {"$counter": [[enc(k, d), enc(v, d)] for k, v in x.items()]}
        if t is collections.deque:
            return {"$deque": [enc(v, d) for v in x], "maxlen": x.maxlen}
        fields = getattr(t, "_fields", None) if tuple in t.__bases__ else None
        if type(fields) is tuple and _names_ok(fields) and _names_ok([t.__name__]):
            return {"$namedtuple": [t.__name__, list(fields), [enc(v, d) for v in x]]}
        return self.other(x)


def dumps(tree):
    return json.dumps(tree, separators=(",", ":")) + "\n"


_namedtuples = {}


def _namedtuple(name, fields):
    if not (_names_ok([name]) and type(fields) is list and _names_ok(fields) and len(set(fields)) == len(fields)):
        raise ValueError("bad namedtuple")
    key = (name, tuple(fields))
    if key not in _namedtuples:
        _namedtuples[key] = collections.namedtuple(name, fields)
    return _namedtuples[key]


def _pairs(items):
    if type(items) is not list or not all(type(p) is list and len(p) == 2 for p in items):
        raise ValueError("bad pairs")
    return items


def loads(line, handle):
    """The value in one line. `handle(tag)` turns a `$h`/`$exc`/`$mod`/`$std`
    object into the receiver's object. Raises ValueError (or RecursionError,
    MemoryError) on anything malformed."""

    def hook(obj):
        if len(obj) == 1 or (len(obj) == 2 and "maxlen" in obj):
            (tag, v), = [(k, v) for k, v in obj.items() if k != "maxlen"]
            if tag == "$int" and type(v) is str:
                return int(v, 16)
            if tag == "$tuple" and type(v) is list:
                return tuple(v)
            if tag == "$dict":
                return dict(_pairs(v))
            if tag == "$set" and type(v) is list:
                return set(v)
            if tag == "$frozenset" and type(v) is list:
                return frozenset(v)
            if tag == "$bytes" and type(v) is str:
                return base64.b64decode(v, validate=True)
            if tag == "$bytearray" and type(v) is str:
                return bytearray(base64.b64decode(v, validate=True))
            if tag == "$complex" and type(v) is list and len(v) == 2:
                return complex(float(v[0]), float(v[1]))
            if tag == "$range" and type(v) is list and len(v) == 3 and all(type(i) is int for i in v):
                return range(*v)
            if tag == "$decimal" and type(v) is str:
                return decimal.Decimal(v)
            if tag == "$fraction" and type(v) is list and len(v) == 2 and all(type(i) is int for i in v):
                return fractions.Fraction(v[0], v[1])
            if tag == "$odict":
                return collections.OrderedDict(_pairs(v))
            if tag == "$ddict":
                return collections.defaultdict(None, _pairs(v))
            if tag == "$counter":
                return collections.Counter(dict(_pairs(v)))
            if tag == "$deque" and type(v) is list:
                maxlen = obj.get("maxlen")
                if maxlen is not None and type(maxlen) is not int:
                    raise ValueError("bad deque")
                return collections.deque(v, maxlen)
            if tag == "$namedtuple" and type(v) is list and len(v) == 3 and type(v[2]) is list:
                return _namedtuple(v[0], v[1])(*v[2])
        if "$h" in obj or "$exc" in obj or "$mod" in obj or "$std" in obj:
            return handle(obj)
        raise ValueError("unknown object " + repr(list(obj)[:3])[:80])

    return json.loads(line, object_hook=hook)


_BUILTIN_FN = type(len)
# Standard-library modules whose import does something beyond defining names.
_NOT_BY_NAME = {"antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo", "ensurepip", "venv", "pydoc"}


def stdlib_name(x):
    """[module, qualname] of a function or class of the standard library (or
    builtins) that `x` is, else None."""
    if not isinstance(x, (type, types.FunctionType, _BUILTIN_FN)):
        return None
    try:
        module, qualname = x.__module__, x.__qualname__
        if type(module) is not str or type(qualname) is not str:
            return None
        if module.split(".")[0] not in sys.stdlib_module_names and module != "builtins":
            return None
        obj = sys.modules.get(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
        return [module, qualname] if obj is x else None
    except Exception:
        return None


def resolve_stdlib(name):
    """The receiver's own standard-library object named [module, qualname]
    (the module itself when qualname is empty)."""
    if type(name) is not list or len(name) != 2 or not all(type(p) is str for p in name):
        raise ValueError("bad standard-library name")
    module, qualname = name
    top = module.split(".")[0]
    if module != "builtins" and (top not in sys.stdlib_module_names or top in _NOT_BY_NAME):
        raise ValueError("not a standard-library module: " + module[:80])
    obj = importlib.import_module(module)
    for part in qualname.split(".") if qualname else ():
        if not part.isidentifier():
            raise ValueError("bad qualified name")
        obj = getattr(obj, part)
    return obj
