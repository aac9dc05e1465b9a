"""Pure rendering of the bundle's jinja2 templates: values in, text out, nothing written.

Every value that lands in an INI or YAML file is checked here (no newline, no comment mark in
INI) or quoted by ``tojson`` in the template, so a strange name cannot change the file's shape.
"""

import os

import jinja2

_HERE = os.path.dirname(os.path.abspath(__file__))


def _shipped(name, exists):
    """``name`` in the wheel's _bundle, else at the top of a checkout; None when neither has it."""
    for base in (os.path.join(_HERE, "..", "_bundle"), os.path.join(_HERE, "..", "..")):
        path = os.path.normpath(os.path.join(base, name))
        if exists(path):
            return path
    return None


def bundle_dir(name):
    """The directory holding the ``installer``, ``compose`` or ``images`` bundle."""
    path = _shipped(name, os.path.isdir)
    if path is None:
        raise FileNotFoundError("the %s bundle is missing from this installation" % name)
    return path


def bundle_file(name):
    """The path of a file shipped at the top of the bundle (SKILL.md)."""
    path = _shipped(name, os.path.isfile)
    if path is None:
        raise FileNotFoundError("%s is missing from this installation" % name)
    return path


def _env(name):
    return jinja2.Environment(loader=jinja2.FileSystemLoader(bundle_dir(name)),
                              undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                              autoescape=False)


def ini_value(value):
    """A value safe for a ``key = value`` line; ValueError otherwise."""
    text = str(value)
    if any(c in text for c in "\n\r#;\0") or text != text.strip():
        raise ValueError("%r cannot be written to an INI file safely" % text)
    return text


def render(bundle, template, **values):
    """The text of ``bundle/template`` with ``values``; INI values checked first."""
    if template.endswith((".conf.j2", ".service.j2")):
        values = {k: ini_value(v) if isinstance(v, (str, int)) else v for k, v in values.items()}
    return _env(bundle).get_template(template).render(**values)
