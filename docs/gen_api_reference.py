#!/usr/bin/env python3
"""Generate docs/api-reference.md from the doc comments of include/mtl.h.

    gen_api_reference.py [HEADER] [-o OUT]        write the reference (default: stdout)
    gen_api_reference.py [HEADER] --check FILE    regenerate into a temporary file and
                                                  fail (exit 1, with a diff) if FILE differs

HEADER defaults to include/mtl.h next to this script's directory.  Standard
library only, so it runs wherever the library builds; `meson test --suite docs`
runs the --check form so the committed reference always matches the header.

What it understands (and it stops with an error on anything else at the top
level of the header, so a new kind of declaration cannot silently vanish):
  - the opening comment of the file (the worked example and the conventions);
  - section banners:       /* ------ \\n * Title.  Text... \\n * ------ */
  - group notes:           /* Plain comment before a group of declarations. */
  - doc comments:          /** Text.  @param name text  @return text  @thread_safety text */
  - trailing doc comments: declaration; /**< text */   (also on enum members and #defines)
  - MTL_API functions, typedef enum / struct (opaque or with fields), function-pointer
    typedefs, and #define MTL_* constants.
"""
import difflib
import os
import re
import sys
import tempfile

TAGS = ("param", "return", "thread_safety")


# ---- lexing -------------------------------------------------------------------------

class Item:
    def __init__(self, kind, text, line):
        self.kind, self.text, self.line = kind, text, line  # kind: comment, pp, code

    def __repr__(self):
        return "%s@%d" % (self.kind, self.line)


def lex(src):
    """Split the header into comments, preprocessor lines and code up to ';'."""
    items, i, n = [], 0, len(src)

    def line_of(pos):
        return src.count("\n", 0, pos) + 1

    while i < n:
        if src.startswith("/*", i):
            j = src.index("*/", i) + 2
            items.append(Item("comment", src[i:j], line_of(i)))
            i = j
        elif src[i] == "#" and src[src.rfind("\n", 0, i) + 1:i].strip() == "":
            j = i
            while True:  # a directive, with backslash continuations
                e = src.find("\n", j)
                e = n if e < 0 else e
                if src[e - 1] != "\\":
                    break
                j = e + 1
            text = src[i:e]
            k = text.find("/**<")
            if k >= 0:  # #define NAME value /**< doc */
                items.append(Item("pp", text[:k].rstrip(), line_of(i)))
                items.append(Item("comment", text[k:], line_of(i)))
            else:
                items.append(Item("pp", re.sub(r"/\*.*?\*/", "", text).rstrip(), line_of(i)))
            i = e
        elif src[i].isspace():
            i += 1
        elif src.startswith('extern "C" {', i) or src[i] == "}":
            j = src.index("{", i) + 1 if src[i] == "e" else i + 1
            items.append(Item("brace", src[i:j], line_of(i)))
            i = j
        else:
            j, depth = i, 0
            while j < n:
                if src.startswith("/*", j):
                    j = src.index("*/", j) + 2
                    continue
                c = src[j]
                depth += (c == "{") - (c == "}")
                j += 1
                if c == ";" and depth == 0:
                    break
            items.append(Item("code", src[i:j], line_of(i)))
            i = j
    return items


# ---- doc comments to Markdown ------------------------------------------------------------

def comment_lines(raw):
    """The text lines of a comment, without the comment markers and leading ' * '."""
    body = re.sub(r"^/\*\*?<?", "", raw)
    body = re.sub(r"\*/$", "", body)
    lines = []
    for ln in body.split("\n"):
        ln = re.sub(r"^\s*\* ?", "", ln) if lines else ln.lstrip()
        lines.append(ln.rstrip())
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


def _outside_code(text, fn):
    """Apply fn to the parts of text that are not `code spans`."""
    parts = re.split(r"(`[^`]*`)", text)
    return "".join(p if len(p) >= 2 and p[0] == "`" and p[-1] == "`" else fn(p) for p in parts)


def escape(text):
    """Put API names in code spans, escape Markdown emphasis elsewhere, link docs pages."""
    def names(p):
        p = re.sub(r"(?<![\w/])(mtl_[a-z0-9_]+(?:\(\)|\*)?|MTL_[A-Z0-9_]+\*?)", r"`\1`", p)
        return p

    def plain(p):
        p = p.replace("\\", "\\\\").replace("*", "\\*").replace("<", "&lt;")
        return re.sub(r"\bdocs/([A-Za-z0-9_-]+\.md)\b", r"[docs/\1](\1)", p)

    return _outside_code(_outside_code(text, names), plain)


def link_functions(text, anchors):
    """Turn `name` / `name()` code spans naming a declaration into links to its entry."""
    def repl(m):
        name = m.group(1)
        return "[`%s%s`](#%s)" % (name, m.group(2) or "", anchors[name]) if name in anchors else m.group(0)
    return re.sub(r"(?<!\[)`((?:mtl|MTL)_[A-Za-z0-9_]+)(\(\))?`", repl, text)


def paragraphs(lines):
    """Group comment lines into blocks: ('p', text), ('li', text), ('code', text)."""
    blocks, cur = [], None
    for ln in lines:
        indent = len(ln) - len(ln.lstrip())
        s = ln.strip()
        if not s:
            if cur is not None and cur[0] == "code":
                cur[1].append("")  # a blank line inside a code example
            else:
                cur = None
            continue
        if indent >= 4 and (cur is None or cur[0] == "code") and not (cur and cur[0] == "li"):
            if cur is None or cur[0] != "code":
                cur = ["code", []]
                blocks.append(cur)
            cur[1].append(ln[4:] if ln.startswith("    ") else s)
            continue
        if s.startswith("- "):
            cur = ["li", [s[2:]]]
            blocks.append(cur)
            continue
        if cur is None or cur[0] == "code":
            cur = ["p", []]
            blocks.append(cur)
        cur[1].append(s)
    result = []
    for kind, body in blocks:
        if kind == "code":
            while body and body[-1] == "":
                body.pop()
            result.append((kind, "\n".join(body)))
        else:
            result.append((kind, " ".join(body)))
    return result


def split_tags(text):
    """'Main text. @param a x @return y' -> ('Main text.', [('param', 'a x'), ('return', 'y')])."""
    pieces = re.split(r"@(%s)\b" % "|".join(TAGS), text)
    main, tags = pieces[0].strip(), []
    for k in range(1, len(pieces), 2):
        tags.append((pieces[k], pieces[k + 1].strip()))
    return main, tags


def render_doc(lines, functions):
    """Markdown for a doc comment's lines."""
    out = []
    for kind, text in paragraphs(lines):
        if kind == "code":
            out.append("```c\n%s\n```" % text)
            continue
        main, tags = split_tags(text)
        if main:
            out.append(("- " if kind == "li" else "") + link_functions(escape(main), functions))
        params = []
        for tag, body in tags:
            if tag == "param":
                name, _, rest = body.partition(" ")
                params.append("- `%s`: %s" % (name, link_functions(escape(rest.strip()), functions)))
            elif tag == "return":
                out.append("**Returns** " + link_functions(escape(body), functions))
            else:
                out.append("**Thread safety:** " + link_functions(escape(body), functions))
        if params:
            out.insert(len(out) - sum(1 for t, _ in tags if t != "param"), "**Parameters**\n\n" +
                       "\n".join(params))
    # consecutive list items form one list
    md = []
    for block in out:
        if md and block.startswith("- ") and md[-1].startswith("- "):
            md[-1] += "\n" + block
        else:
            md.append(block)
    return "\n\n".join(md)


# ---- declarations ---------------------------------------------------------------------

def strip_comments(code):
    return re.sub(r"/\*.*?\*/", "", code, flags=re.S)


def format_prototype(code):
    """One line if short, else one parameter per line."""
    text = " ".join(strip_comments(code).replace("MTL_API", "").split())
    text = text.replace("( ", "(").replace(" )", ")")
    if len(text) <= 96:
        return text
    head, _, args = text.partition("(")
    args = args.rstrip(";").rstrip(")")
    params = [a.strip() for a in args.split(",")]
    return head + "(\n" + ",\n".join("    " + p for p in params) + ");"


def parse_enum(code):
    """Members of a typedef enum: a list of ('group', text) and ('member', name, value, doc)."""
    body = code[code.index("{") + 1:code.rindex("}")]
    name = code[code.rindex("}") + 1:].strip(" ;\n")
    rows, pos = [], 0
    token = re.compile(r"/\*\*<(.*?)\*/|/\*(.*?)\*/|([A-Z][A-Z0-9_]*)\s*(?:=\s*([^,/]+?))?\s*(?:,|(?=/\*)|$)",
                       re.S)
    for m in token.finditer(body):
        if m.group(1) is not None:  # trailing doc of the previous member
            if rows and rows[-1][0] == "member":
                rows[-1] = rows[-1][:3] + (" ".join(m.group(1).split()),)
        elif m.group(2) is not None:
            rows.append(("group", " ".join(m.group(2).split())))
        elif m.group(3):
            rows.append(("member", m.group(3), (m.group(4) or "").strip(), ""))
        pos = m.end()
    return name, rows


class Decl:
    def __init__(self, kind, name, code, doc, line):
        self.kind, self.name, self.code, self.doc, self.line = kind, name, code, doc, line


def parse(src):
    items = lex(src)
    intro, sections = None, []
    current = {"title": "Preliminaries", "text": [], "entries": []}
    pending = []  # doc comment lines for the next declaration
    last = None   # the last declaration (for /**< trailing docs)

    def add(decl):
        nonlocal pending, last
        decl.doc = pending
        pending, last = [], decl
        current["entries"].append(("decl", decl))

    for it in items:
        if it.kind == "comment":
            raw = it.text
            if intro is None and it.line == 1:
                intro = comment_lines(raw)
            elif raw.startswith("/**<"):
                if last is None:
                    raise SystemExit("line %d: a trailing doc comment follows no declaration" % it.line)
                last.doc = last.doc + ([""] if last.doc else []) + comment_lines(raw)
            elif raw.startswith("/**"):
                pending = comment_lines(raw)
            elif re.match(r"/\*\s*-{8,}", raw):
                lines = [l for l in comment_lines(raw) if not re.match(r"^-+$", l.strip())]
                text = " ".join(l.strip() for l in lines)
                m = re.match(r"(.*?)(?:\.\s\s+|\.$|$)(.*)", text)
                current = {"title": m.group(1).strip(), "text": m.group(2).strip(), "entries": []}
                sections.append(current)
                last = None
            else:
                current["entries"].append(("note", comment_lines(raw)))
                last = None
        elif it.kind == "pp":
            m = re.match(r"#\s*define\s+(MTL_[A-Z0-9_]+)\b(.*)", it.text, re.S)
            if m and m.group(1) not in ("MTL_API", "MTL_H"):
                value = " ".join(m.group(2).replace("\\\n", " ").split())
                add(Decl("macro", m.group(1), "#define %s %s" % (m.group(1), value), [], it.line))
        elif it.kind == "brace":
            continue
        else:
            code = it.text.strip()
            flat = " ".join(strip_comments(code).split())
            if flat.startswith("MTL_API"):
                m = re.search(r"([a-z_0-9]+)\s*\(", flat)
                add(Decl("function", m.group(1), format_prototype(code), [], it.line))
            elif flat.startswith("typedef enum"):
                name, rows = parse_enum(code)
                d = Decl("enum", name, code, [], it.line)
                d.rows = rows
                add(d)
            elif re.match(r"typedef struct (\w+) (\w+);$", flat):
                add(Decl("opaque", flat.split()[-1].rstrip(";"), flat, [], it.line))
            elif flat.startswith("typedef struct"):
                name = flat[flat.rindex("}") + 1:].strip(" ;")
                add(Decl("struct", name, strip_comments(code), [], it.line))
            elif re.match(r"typedef .*\(\s*\*\s*(\w+)\s*\)", flat):
                name = re.match(r"typedef .*\(\s*\*\s*(\w+)\s*\)", flat).group(1)
                add(Decl("callback", name, format_prototype(code), [], it.line))
            else:
                raise SystemExit("line %d: gen_api_reference.py does not understand: %s" % (it.line, flat[:80]))
    return intro, sections


# ---- rendering --------------------------------------------------------------------------

# Heading suffixes by kind; a heading's anchor is slug(name + suffix), as GitHub makes it.
LABELS = {"function": "", "enum": " (enum)", "struct": " (struct)", "opaque": " (opaque handle)",
          "callback": " (callback type)", "macro": " (macro)"}


def slug(title):
    s = re.sub(r"[^\w\- ]", "", title.lower())
    return s.replace(" ", "-")


def render(src, header_name):
    intro, sections = parse(src)
    decls = [d for s in sections for kind, d in s["entries"] if kind == "decl"]
    functions = {d.name: slug(d.name + LABELS[d.kind]) for d in decls}  # every name -> its anchor
    n_functions = sum(1 for d in decls if d.kind == "function")
    n_api = len(re.findall(r"^MTL_API\s", src, re.M))
    if n_api != n_functions:
        raise SystemExit("parsed %d functions but the header has %d MTL_API declarations" %
                         (n_functions, n_api))

    out = ["# API reference", "",
           "<!-- Generated by docs/gen_api_reference.py from %s: do not edit by hand. "
           "Regenerate with `python3 docs/gen_api_reference.py -o docs/api-reference.md`; "
           "`meson test --suite docs` fails when this file is stale. -->" % header_name, "",
           "Every public declaration of `%s`, in header order, with its doc comment. "
           "The conventions below hold for every function unless its entry says otherwise; "
           "[errors](errors.md) and [threading](threading.md) explain them in more depth." % header_name, ""]
    if intro:
        # The file's opening comment: a title line, then the worked example and conventions.
        body = intro[1:] if intro and intro[0].startswith(header_name.split("/")[-1]) else intro
        body = [l for l in body if not l.startswith("SPDX-License-Identifier")]
        out += ["## Overview", "", render_doc(body, functions), ""]

    out += ["## Contents", ""]
    for s in sections:
        out.append("- [%s](#%s)" % (s["title"], slug(s["title"])))
    out += ["- [Index](#index)", ""]

    for s in sections:
        out += ["## " + s["title"], ""]
        if s["text"]:
            out += [link_functions(escape(s["text"]), functions), ""]
        for kind, entry in s["entries"]:
            if kind == "note":
                out += ["*" + link_functions(escape(" ".join(l.strip() for l in entry)), functions) + "*", ""]
                continue
            d = entry
            out += ["### `%s`%s" % (d.name, LABELS[d.kind]), ""]
            if d.kind == "enum":
                if d.doc:
                    out += [render_doc(d.doc, functions), ""]
                out += ["| name | value | meaning |", "|---|---|---|"]
                for row in d.rows:
                    if row[0] == "group":
                        out.append("| *%s* | | |" % escape(row[1]).replace("|", "\\|"))
                    else:
                        _, name, value, doc = row
                        value = ("`%s`" % value) if value else ""
                        cell = link_functions(escape(doc), functions) if doc else ""
                        out.append("| `%s` | %s | %s |" % (name, value.replace("|", "\\|"), cell.replace("|", "\\|")))
                out.append("")
                continue
            out += ["```c", d.code if d.kind != "struct" else d.code.strip(), "```", ""]
            if d.doc:
                out += [render_doc(d.doc, functions), ""]

    out += ["## Index", ""]
    index = sorted((d.name, functions[d.name]) for d in decls)
    out.append(" ·\n".join("[`%s`](#%s)" % entry for entry in index))
    out.append("")
    text = "\n".join(out)
    return re.sub(r"\n{3,}", "\n\n", text)


def main(argv):
    here = os.path.dirname(os.path.abspath(__file__))
    header = os.path.join(here, "..", "include", "mtl.h")
    out_path, check_path, args = None, None, list(argv)
    while args:
        a = args.pop(0)
        if a in ("-o", "--output") and args:
            out_path = args.pop(0)
        elif a == "--check" and args:
            check_path = args.pop(0)
        elif a in ("-h", "--help"):
            print(__doc__)
            return 0
        elif not a.startswith("-"):
            header = a
        else:
            print("unknown argument: %s (try --help)" % a, file=sys.stderr)
            return 2
    with open(header, encoding="utf-8") as f:
        text = render(f.read(), "include/mtl.h")

    if check_path:
        with tempfile.TemporaryDirectory() as tmp:
            fresh = os.path.join(tmp, "api-reference.md")
            with open(fresh, "w", encoding="utf-8", newline="\n") as f:
                f.write(text)
            with open(fresh, encoding="utf-8") as f:
                new = f.read()
        try:
            with open(check_path, encoding="utf-8") as f:
                old = f.read()
        except OSError as e:
            print("FAIL: cannot read %s: %s" % (check_path, e))
            return 1
        if old == new:
            print("1 passed, 0 failed (%s matches the header)" % os.path.basename(check_path))
            return 0
        sys.stdout.writelines(difflib.unified_diff(old.splitlines(True), new.splitlines(True),
                                                   check_path, "regenerated", n=2))
        print("\nFAIL: %s is stale; run: python3 docs/gen_api_reference.py -o docs/api-reference.md"
              % check_path)
        return 1
    if out_path:
        with open(out_path, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
