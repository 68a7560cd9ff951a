"""ISO Schematron compiled to XSLT 3: the project's own engine for the CI-SIS schematrons.

The ANS schematrons use ``queryBinding="xslt2"``, ``include`` (of patterns, rules and whole files), abstract
patterns with parameters (``is-a``), abstract rules (``extends``), phases and ``let`` at schema, pattern and rule
level. This module turns one ``.sch`` file into the text of an XSLT stylesheet that, applied to a document,
writes SVRL ``failed-assert`` / ``successful-report`` elements. It is pure (lxml only, no XSLT processor);
``agent.cda.saxon`` runs the result.

The stylesheet carries ``xml:base`` = the ``.sch`` location, so the relative value-set lookups of the kit
(``document('../jeuxDeValeurs/...')``, ``doc('include/voc-...')``) resolve where the kit's authors meant.

It never reads anything but the schema files it is given (the kit is trusted local data, read with a parser that
resolves no entities and touches no network).
"""

from __future__ import annotations

import re
from copy import deepcopy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lxml import etree

SCH = "http://purl.oclc.org/dsdl/schematron"
XSL = "http://www.w3.org/1999/XSL/Transform"
SVRL = "http://purl.oclc.org/dsdl/svrl"
LOC = "urn:relais:schematron:location"
_S = f"{{{SCH}}}"
_X = f"{{{XSL}}}"


class SchematronError(Exception):
    """The schema itself cannot be compiled (missing include, unknown abstract pattern...)."""


def _parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, remove_comments=True)


@dataclass
class _Loaded:
    root: etree._Element
    namespaces: dict[str, str] = field(default_factory=dict)


def _load(path: Path, seen: tuple[Path, ...], namespaces: dict[str, str]) -> etree._Element:
    """Parse ``path`` and replace every ``sch:include`` by the root of the file it names, recursively."""
    if path in seen:
        raise SchematronError(f"inclusion circulaire de {path}")
    try:
        root = etree.parse(str(path), _parser()).getroot()
    except (OSError, etree.XMLSyntaxError) as exc:
        raise SchematronError(f"schématron illisible : {path} ({exc})") from exc
    for node in root.iter():
        for prefix, uri in (node.nsmap or {}).items():
            if prefix and uri not in (SCH, XSL):
                namespaces.setdefault(prefix, uri)
    for include in list(root.iter(f"{_S}include")):
        href = include.get("href", "")
        target = (path.parent / href).resolve()
        if not target.exists():
            raise SchematronError(f"fichier inclus introuvable : {href} (depuis {path.name})")
        included = _load(target, (*seen, path), namespaces)
        parent = include.getparent()
        if parent is None:
            raise SchematronError(f"include à la racine de {path}")
        included.tail = include.tail
        parent.replace(include, included)
    return root


def _substitute(text: str, params: dict[str, str]) -> str:
    for name in sorted(params, key=len, reverse=True):
        value = params[name]
        text = re.sub(r"\$" + re.escape(name) + r"(?![\w.\-])", lambda _m: value, text)  # noqa: B023
    return text


def _expand_abstract_patterns(schema: etree._Element) -> None:
    abstract = {p.get("id"): p for p in schema.iter(f"{_S}pattern") if p.get("abstract") == "true"}
    for pattern in list(schema.iter(f"{_S}pattern")):
        base_id = pattern.get("is-a")
        if not base_id:
            continue
        base = abstract.get(base_id)
        if base is None:
            raise SchematronError(f"pattern abstrait inconnu : {base_id}")
        params = {p.get("name", ""): p.get("value", "") for p in pattern.findall(f"{_S}param")}
        for child in list(pattern):
            pattern.remove(child)
        for child in base:
            copy = _copy_with_params(child, params)
            pattern.append(copy)
        del pattern.attrib["is-a"]
    for pattern in abstract.values():
        parent = pattern.getparent()
        if parent is not None:
            parent.remove(pattern)


def _copy_with_params(node: etree._Element, params: dict[str, str]) -> etree._Element:
    copy = deepcopy(node)
    for element in copy.iter():
        if not isinstance(element.tag, str):
            continue
        for attr in ("context", "test", "select", "value", "path", "rule"):
            value = element.get(attr)
            if value is not None and "$" in value:
                element.set(attr, _substitute(value, params))
    return copy


def _abstract_rules(schema: etree._Element) -> dict[str, etree._Element]:
    return {r.get("id", ""): r for r in schema.iter(f"{_S}rule") if r.get("abstract") == "true"}


def _rule_body(rule: etree._Element, abstract: dict[str, etree._Element], depth: int = 0) -> list[etree._Element]:
    """The rule's let/assert/report children, with ``extends`` replaced by the abstract rule's body."""
    if depth > 20:
        raise SchematronError("extends trop imbriqués")
    out: list[etree._Element] = []
    for child in rule:
        if not isinstance(child.tag, str):
            continue
        if child.tag == f"{_S}extends":
            base = abstract.get(child.get("rule", ""))
            if base is None:
                raise SchematronError(f"règle abstraite inconnue : {child.get('rule')}")
            out.extend(_rule_body(base, abstract, depth + 1))
        elif child.tag in (f"{_S}let", f"{_S}assert", f"{_S}report"):
            out.append(child)
    return out


def _active_patterns(schema: etree._Element, phase: str | None) -> list[etree._Element]:
    patterns = [p for p in schema.iter(f"{_S}pattern") if p.get("abstract") != "true"]
    chosen = phase or schema.get("defaultPhase") or "#ALL"
    if chosen == "#ALL":
        return patterns
    phases = {p.get("id"): p for p in schema.iter(f"{_S}phase")}
    if chosen not in phases:
        raise SchematronError(f"phase inconnue : {chosen}")
    wanted = [a.get("pattern") for a in phases[chosen].findall(f"{_S}active")]
    by_id: dict[str | None, list[etree._Element]] = {}
    for p in patterns:
        by_id.setdefault(p.get("id"), []).append(p)
    return [p for pid in wanted for p in by_id.get(pid, [])]


def _message(target: etree._Element, source: etree._Element) -> None:
    """Copy an assert's mixed content (text, value-of, name, emph...) as XSLT instructions into ``target``."""
    def text(value: str | None) -> None:
        if value:
            etree.SubElement(target, f"{_X}text").text = value

    text(source.text)
    for child in source:
        if isinstance(child.tag, str):
            if child.tag == f"{_S}value-of":
                etree.SubElement(target, f"{_X}value-of", select=child.get("select", "."), separator=" ")
            elif child.tag == f"{_S}name":
                etree.SubElement(target, f"{_X}value-of", select=f"name({child.get('path', '.')})")
            else:
                _message(target, child)
        text(child.tail)


_ATTRIBUTE_CONTEXT = re.compile(r"(^|[/|(]\s*)(@|attribute::)")


TEMPLATE = "template"
PATH = "path"


def compile_schema(path: Path, phase: str | None = None, form: str = PATH, *, fired_rules: bool = False) -> str:
    """The XSLT 3 text for the schematron at ``path`` (its phase, default: the schema's defaultPhase).

    ``form`` says how a pattern reaches the nodes its rules check. ``template`` (the ISO skeleton's way): a
    recursive walk of the whole tree in the pattern's mode, every node tested against every rule's match pattern.
    ``path`` (the default; two to six times faster with Saxon on the kit's costly schematrons): each rule's context
    evaluated once as a path (``//context``), and only the nodes found are dispatched to the very same rule
    templates, without recursion. The rule templates, their priorities (first matching rule of the pattern wins),
    lets, messages and locations are the same in both forms, and the nodes reach them in the same order (document
    order), so the findings are the same: a node matches the pattern ``P`` exactly when it is in ``root()//(P)``
    (XSLT 2.0, 5.5.3), and the template walk visits every element. A pattern the path form cannot prove equivalent
    keeps the template form: a context that may select something else than elements or the document node
    (attributes, text, comments: the walk reaches those by other roads, the built-in shallow-skip or a matched
    rule's own apply-templates, which the path form would not reproduce), or whose meaning depends on the matched
    node (``current()``), or that is not a plain path (``key()``, ``id()``, a variable). See ``path_contexts``.

    ``fired_rules``: each rule also writes an SVRL ``fired-rule`` (its context and the node's location) where it
    fires, so that two compilations can be compared on which rule checked which node, not only on failures."""
    path = path.resolve()
    namespaces: dict[str, str] = {}
    schema = _load(path, (), namespaces)
    if schema.tag != f"{_S}schema":
        raise SchematronError(f"{path.name} n'est pas un schéma ISO Schematron")
    for ns in schema.iter(f"{_S}ns"):
        namespaces[ns.get("prefix", "")] = ns.get("uri", "")
    namespaces.pop("xml", None)
    namespaces.pop("", None)
    _expand_abstract_patterns(schema)
    abstract_rules = _abstract_rules(schema)
    patterns = _active_patterns(schema, phase)

    nsmap: dict[str | None, str] = {"xsl": XSL, "svrl": SVRL, "loc": LOC, "xs": "http://www.w3.org/2001/XMLSchema"}
    for prefix, uri in namespaces.items():
        if prefix not in nsmap:
            nsmap[prefix] = uri
    sheet = etree.Element(f"{_X}stylesheet", nsmap=nsmap, version="3.0")
    sheet.set("{http://www.w3.org/XML/1998/namespace}base", path.as_uri())
    sheet.set("exclude-result-prefixes", " ".join(p for p in nsmap if p and p not in ("xsl", "svrl")))
    etree.SubElement(sheet, f"{_X}output", method="xml", indent="no")
    _location_function(sheet)
    emitter = _Emitter(sheet, abstract_rules)
    # queryBinding xslt2 lets a schema declare its own xsl:function / xsl:key: they go to the stylesheet as is.
    for foreign in schema:
        if isinstance(foreign.tag, str) and foreign.tag in (f"{_X}function", f"{_X}key", f"{_X}include",
                                                            f"{_X}import"):
            sheet.append(deepcopy(foreign))

    globals_seen: dict[str, str] = {}

    def global_let(let: etree._Element) -> None:
        # Schema, phase and pattern lets are global variables: the same name twice is only allowed with the same
        # value (an abstract pattern instantiated twice), never silently shadowed.
        name, value = let.get("name", ""), let.get("value", "()")
        if name in globals_seen:
            if globals_seen[name] != value:
                raise SchematronError(f"variable globale {name} définie deux fois avec des valeurs différentes")
            return
        globals_seen[name] = value
        etree.SubElement(sheet, f"{_X}variable", name=name, select=value)

    for let in schema.findall(f"{_S}let"):
        global_let(let)
    for ph in schema.iter(f"{_S}phase"):
        if ph.get("id") == (phase or schema.get("defaultPhase")):
            for let in ph.findall(f"{_S}let"):
                global_let(let)
    for pattern in patterns:
        for let in pattern.findall(f"{_S}let"):
            global_let(let)

    keyed: set[str] = set()  # prefixes whose templateId index the path searches use
    main = etree.SubElement(sheet, f"{_X}template", match="/")
    out = etree.SubElement(main, f"{{{SVRL}}}schematron-output")
    for index, pattern in enumerate(patterns):
        mode = f"p{index}"
        active = etree.SubElement(out, f"{{{SVRL}}}active-pattern")
        etree.SubElement(active, f"{_X}attribute", name="id").text = pattern.get("id", mode)
        rules = [r for r in pattern.findall(f"{_S}rule") if r.get("abstract") != "true"]
        contexts = [r.get("context", "/") for r in rules]
        paths = path_contexts(contexts) if form == PATH else None
        if paths is not None:
            # Only the nodes some rule's context selects, in document order (a union), each once, to the rule
            # templates below; a node no template matches is skipped without visiting its children.
            select = factor_paths(paths, keyed)
            etree.SubElement(out, f"{_X}apply-templates", select=select, mode=mode)
            etree.SubElement(sheet, f"{_X}mode", name=mode, **{"on-no-match": "deep-skip"})
        else:
            etree.SubElement(out, f"{_X}apply-templates", select="/", mode=mode)
            etree.SubElement(sheet, f"{_X}mode", name=mode, **{"on-no-match": "shallow-skip"})
        attributes = any(_ATTRIBUTE_CONTEXT.search(c) for c in contexts)
        children = "@*|*" if attributes else "*"
        for position, rule in enumerate(rules):
            template = etree.SubElement(
                sheet, f"{_X}template", match=rule.get("context", "/"), mode=mode,
                priority=str(10_000 - position),
            )
            if fired_rules:
                fired = etree.SubElement(template, f"{{{SVRL}}}fired-rule")
                etree.SubElement(fired, f"{_X}attribute", name="context").text = rule.get("context", "/")
                etree.SubElement(fired, f"{_X}attribute", name="location", select="loc:path(.)")
            emitter.rule(template, rule, pattern.get("id", mode))
            if paths is None:
                etree.SubElement(template, f"{_X}apply-templates", select=children, mode=mode)
    for prefix in sorted(keyed):
        etree.SubElement(sheet, f"{_X}key", name=f"loc:templateId-{prefix}", match="*",
                         use=f"{prefix}:templateId/@root")
    return str(etree.tostring(sheet, encoding="unicode"))


_LITERAL = re.compile(r"'[^']*'|\"[^\"]*\"")
_NAME = r"(\*|[A-Za-z_][\w.\-]*(:[A-Za-z_][\w.\-]*|:\*)?|\*:[A-Za-z_][\w.\-]*)"
_STEP = re.compile(rf"(child::|descendant::|descendant-or-self::)?{_NAME}")
_LAST_STEP = re.compile(rf"(child::)?{_NAME}")


def _top_level(context: str) -> str | None:
    """The context with string literals and predicates (``[...]``) removed, or None when unbalanced."""
    text = _LITERAL.sub("", context)
    if "'" in text or '"' in text:
        return None
    out: list[str] = []
    depth = 0
    for char in text:
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
            if depth < 0:
                return None
        elif depth == 0:
            out.append(char)
    return "".join(out) if depth == 0 else None


def _split_union(context: str) -> list[str] | None:
    """The branches of a context's top-level ``|`` (outside literals and predicates), or None if it has some
    other top-level syntax (parentheses, the ``union`` keyword) this module does not split."""
    text = _LITERAL.sub(lambda m: "\0" * len(m.group()), context)
    branches: list[str] = []
    depth, start = 0, 0
    for index, char in enumerate(text):
        if char in "[(":
            depth += 1
        elif char in "])":
            depth -= 1
        elif char == "|" and depth == 0:
            branches.append(context[start:index].strip())
            start = index + 1
    branches.append(context[start:].strip())
    return branches if all(branches) else None


def path_contexts(contexts: list[str]) -> list[str] | None:
    """The path expressions that select, from the document node, every node the rule contexts (XSLT match
    patterns) can match; None when one context is outside what the path form proves equivalent (see
    ``compile_schema``): every branch must be a path of element name tests with predicates (``/`` alone, the
    document node, too), with no ``current()``, and no step that is not an element test."""
    paths: list[str] = []
    for context in contexts:
        if re.search(r"current\s*\(", context):
            return None
        branches = _split_union(context)
        if branches is None:
            return None
        for branch in branches:
            if branch == "/":
                paths.append("/")
                continue
            top = _top_level(branch)
            if top is None:
                return None
            steps = [step.strip() for step in top.strip().replace("//", "/").split("/")]
            if steps[0] == "":
                steps = steps[1:]
            if not steps or not all(_STEP.fullmatch(step) for step in steps):
                return None
            if not _LAST_STEP.fullmatch(steps[-1]):
                return None
            paths.append(branch if branch.startswith("/") else "//" + branch)
    return paths


class _Emitter:
    """Writes rule templates; an abstract rule becomes one named template that every extending rule calls."""

    def __init__(self, sheet: etree._Element, abstract: dict[str, etree._Element]) -> None:
        self.sheet = sheet
        self.abstract = abstract
        self.named: dict[str, str] = {}

    def rule(self, template: etree._Element, rule: etree._Element, pattern: str) -> None:
        for child in rule:
            if not isinstance(child.tag, str):
                continue
            if child.tag == f"{_S}extends":
                call = etree.SubElement(template, f"{_X}call-template", name=self._named(child.get("rule", "")))
                etree.SubElement(call, f"{_X}with-param", name="loc:pattern", select=_string_literal(pattern))
            elif child.tag in (f"{_S}let", f"{_S}assert", f"{_S}report"):
                self._item(template, child, pattern_value=_string_literal(pattern))

    def _named(self, rule_id: str) -> str:
        if rule_id in self.named:
            return self.named[rule_id]
        base = self.abstract.get(rule_id)
        if base is None:
            raise SchematronError(f"règle abstraite inconnue : {rule_id}")
        name = f"loc:r{len(self.named)}"
        self.named[rule_id] = name
        template = etree.SubElement(self.sheet, f"{_X}template", name=name)
        etree.SubElement(template, f"{_X}param", name="loc:pattern", select="''")
        # Inside an abstract rule, nested extends are inlined: their lets are visible to the extending rule.
        for item in _rule_body(base, self.abstract):
            self._item(template, item, pattern_value="$loc:pattern")
        return name

    def _item(self, template: etree._Element, item: etree._Element, *, pattern_value: str) -> None:
        if item.tag == f"{_S}let":
            etree.SubElement(template, f"{_X}variable", name=item.get("name", ""), select=item.get("value", "()"))
            return
        is_assert = item.tag == f"{_S}assert"
        test = item.get("test", "true()")
        check = etree.SubElement(template, f"{_X}if", test=f"not({test})" if is_assert else test)
        tag = "failed-assert" if is_assert else "successful-report"
        result = etree.SubElement(check, f"{{{SVRL}}}{tag}")
        for name, value in (("role", item.get("role")), ("id", item.get("id"))):
            if value:
                etree.SubElement(result, f"{_X}attribute", name=name).text = value
        etree.SubElement(result, f"{_X}attribute", name="pattern", select=pattern_value)
        etree.SubElement(result, f"{_X}attribute", name="location", select="loc:path(.)")
        message = etree.SubElement(result, f"{{{SVRL}}}text")
        _message(message, item)


def _string_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _location_function(sheet: etree._Element) -> None:
    """``loc:path(node)``: a readable XPath like /ClinicalDocument/component[1]/section[2]/@code."""
    function = etree.SubElement(sheet, f"{_X}function", name="loc:path", **{"as": "xs:string"})
    etree.SubElement(function, f"{_X}param", name="node", **{"as": "node()"})
    etree.SubElement(function, f"{_X}sequence", select=(
        "if ($node instance of document-node()) then '/' else string-join(("
        "for $n in $node/ancestor-or-self::* return concat('/', local-name($n), '[', "
        "count($n/preceding-sibling::*[node-name(.) = node-name($n)]) + 1, ']'), "
        "if ($node instance of attribute()) then concat('/@', name($node)) else ()), '')"
    ))


def _steps(path: str) -> list[tuple[str, str]]:
    """``/a[x/y]//b`` -> [("/", "a[x/y]"), ("//", "b")]: the top-level steps and the separator before each."""
    text = _LITERAL.sub(lambda m: "\0" * len(m.group()), path)
    steps: list[tuple[str, str]] = []
    depth, index, start, separator = 0, 0, 0, ""
    while index < len(text):
        char = text[index]
        if char in "[(":
            depth += 1
        elif char in "])":
            depth -= 1
        elif char == "/" and depth == 0:
            if index > start:
                steps.append((separator, path[start:index].strip()))
            separator = "//" if text.startswith("//", index) else "/"
            index += len(separator)
            start = index
            continue
        index += 1
    if len(text) > start:
        steps.append((separator, path[start:].strip()))
    return steps


# ``*[cda:templateId/@root = '1.2.3']``: the content profile's usual first step (137 rules), each a scan of every
# element; from the document node, ``.//`` that step selects exactly the elements an xsl:key indexed by
# ``cda:templateId/@root`` returns for that string (one scan for all of them).
_BY_TEMPLATE_ID = re.compile(r"\*\[\s*([A-Za-z_][\w.\-]*):templateId/@root\s*=\s*('[^']*'|\"[^\"]*\")\s*\]")


def factor_paths(paths: list[str], keyed: set[str] | None = None) -> str:
    """One expression, from the document node, selecting the union of ``paths`` (absolute, from
    ``path_contexts``) with their common leading steps evaluated once: ``/a[p]/b | /a[p]/c`` becomes
    ``a[p]/(b | c)`` (the path operator distributes over a union: same nodes, in document order). The
    structuration minimale's rules repeat long prefixes (``//hl7:ClinicalDocument[...]/hl7:author[...]/...``)
    hundreds of times. A leading ``//*[p:templateId/@root = 'x']`` becomes a look-up in a key (its prefix added to
    ``keyed``: the caller declares ``loc:templateId-p``)."""
    trie: dict[tuple[str, str], Any] = {}
    terminal = object()
    root_selected = False
    for path in paths:
        if path == "/":
            root_selected = True
            continue
        node = trie
        for step in _steps(path):
            node = node.setdefault(step, {})
        node[terminal] = True  # type: ignore[index]

    def union(node: dict[Any, Any], itself: bool, top: bool) -> str:
        parts = ["."] if itself else []
        for key, child in node.items():
            if key is terminal:
                continue
            separator, step = key
            indexed = _BY_TEMPLATE_ID.fullmatch(step) if top and separator == "//" and keyed is not None else None
            if indexed:
                keyed.add(indexed.group(1))  # type: ignore[union-attr]
                text = f"key('loc:templateId-{indexed.group(1)}', {indexed.group(2)})"
            else:
                text = (".//" if separator == "//" else "") + step
            below = {k: v for k, v in child.items() if k is not terminal}
            if below:
                text += "/(" + union(child, terminal in child, False) + ")"
            parts.append(text)
        return " | ".join(parts)

    return union(trie, root_selected, True) or "()"
