"""The ISO Schematron engine on small schemas written here: include, abstract patterns, abstract rules, phases,
lets, value-set lookups relative to the .sch, first-matching-rule semantics, roles and locations."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.cda.saxon import XsltEngine
from agent.cda.schematron import PATH, TEMPLATE, SchematronError, compile_schema, path_contexts
from agent.cda.validation import CdaValidator, Finding

SCH = 'xmlns="http://purl.oclc.org/dsdl/schematron"'


@pytest.fixture(scope="module")
def engine() -> XsltEngine:
    return XsltEngine()


def run(engine: XsltEngine, sch: Path, document: str, phase: str | None = None) -> list[Finding]:
    """Compile (with a phase when given) and apply; the findings as the validator reads them."""
    validator = CdaValidator(sch.parent.parent, None, engine)
    if phase is not None:
        validator._compiled[sch.name] = engine.compile(compile_schema(sch, phase))
    return validator.run_schematron(sch.name, document)


@pytest.fixture
def kit(tmp_path: Path) -> Path:
    (tmp_path / "schematrons" / "abstract").mkdir(parents=True)
    (tmp_path / "jeuxDeValeurs").mkdir()
    (tmp_path / "jeuxDeValeurs" / "JDV_X.xml").write_text(
        '<RetrieveValueSetResponse xmlns="urn:ihe:iti:svs:2008"><ValueSet><ConceptList>'
        '<Concept code="A" codeSystem="1.2.3"/><Concept code="B" codeSystem="1.2.3"/>'
        '</ConceptList></ValueSet></RetrieveValueSetResponse>')
    (tmp_path / "schematrons" / "abstract" / "inSet.sch").write_text(f"""
<pattern {SCH} id="inSet" abstract="true" xmlns:svs="urn:ihe:iti:svs:2008">
  <rule context="$elt">
    <let name="c" value="@code"/>
    <assert test="document($path)//svs:Concept[@code=$c]">[inSet] <value-of select="$c"/> hors du jeu <name/></assert>
  </rule>
</pattern>""")
    (tmp_path / "schematrons" / "abstract" / "rules.sch").write_text(f"""
<pattern {SCH} id="holder"><rule abstract="true" id="hasId"><assert test="@id">sans id</assert></rule>
<rule abstract="true" id="named"><extends rule="hasId"/><assert test="@name" role="warning">sans nom</assert></rule>
</pattern>""")
    (tmp_path / "schematrons" / "main.sch").write_text(f"""<?xml version="1.0"?>
<schema {SCH} queryBinding="xslt2" defaultPhase="normal">
  <ns prefix="d" uri="urn:d"/>
  <let name="max" value="3"/>
  <include href="abstract/inSet.sch"/>
  <include href="abstract/rules.sch"/>
  <phase id="normal"><active pattern="codes"/><active pattern="items"/></phase>
  <phase id="strict"><active pattern="codes"/><active pattern="items"/><active pattern="count"/></phase>
  <pattern id="codes" is-a="inSet">
    <param name="elt" value="d:code"/>
    <param name="path" value="'../jeuxDeValeurs/JDV_X.xml'"/>
  </pattern>
  <pattern id="items">
    <rule context="d:item[@special]"><assert test="@special = 'yes'">special doit valoir yes</assert></rule>
    <rule context="d:item"><extends rule="named"/></rule>
  </pattern>
  <pattern id="count">
    <rule context="d:doc">
      <assert test="count(d:item) &lt;= $max">trop d'items (max <value-of select="$max"/>)</assert>
    </rule>
  </pattern>
</schema>""")
    return tmp_path / "schematrons" / "main.sch"


GOOD = '<doc xmlns="urn:d"><code code="A"/><item id="1" name="x"/><item special="yes"/></doc>'


def test_a_valid_document_has_no_failure(engine: XsltEngine, kit: Path) -> None:
    assert run(engine, kit, GOOD) == []


def test_abstract_pattern_with_value_set_relative_to_the_sch(engine: XsltEngine, kit: Path) -> None:
    found = run(engine, kit, '<doc xmlns="urn:d"><code code="Z"/></doc>')
    assert [f.message for f in found] == ["[inSet] Z hors du jeu code"]
    assert found[0].location == "/doc[1]/code[1]"


def test_abstract_rules_extend_and_roles_split_errors_from_warnings(engine: XsltEngine, kit: Path) -> None:
    found = run(engine, kit, '<doc xmlns="urn:d"><item/><item id="2"/></doc>')
    assert [(f.message, f.role, f.location) for f in found] == [
        ("sans id", "error", "/doc[1]/item[1]"), ("sans nom", "warning", "/doc[1]/item[1]"),
        ("sans nom", "warning", "/doc[1]/item[2]")]


def test_only_the_first_matching_rule_of_a_pattern_fires(engine: XsltEngine, kit: Path) -> None:
    # item[@special] matches the first rule: the "named" rule must not also run on it.
    found = run(engine, kit, '<doc xmlns="urn:d"><item special="no"/></doc>')
    assert [f.message for f in found] == ["special doit valoir yes"]


def test_phases_and_global_lets(engine: XsltEngine, kit: Path) -> None:
    many = '<doc xmlns="urn:d">' + '<item id="1" name="n"/>' * 4 + "</doc>"
    assert run(engine, kit, many) == []  # the default phase does not count
    strict = run(engine, kit, many, phase="strict")
    assert [f.message for f in strict] == ["trop d'items (max 3)"]


def test_schema_errors_are_clear(tmp_path: Path) -> None:
    (tmp_path / "bad.sch").write_text(f'<schema {SCH}><include href="missing.sch"/></schema>')
    with pytest.raises(SchematronError, match=r"missing\.sch"):
        compile_schema(tmp_path / "bad.sch")
    (tmp_path / "phase.sch").write_text(f'<schema {SCH} defaultPhase="nope"><pattern id="p"/></schema>')
    with pytest.raises(SchematronError, match="phase inconnue"):
        compile_schema(tmp_path / "phase.sch")
    (tmp_path / "lets.sch").write_text(f'<schema {SCH}><let name="a" value="1"/><pattern id="p"><let name="a" '
                                       'value="2"/></pattern></schema>')
    with pytest.raises(SchematronError, match="deux fois"):
        compile_schema(tmp_path / "lets.sch")


def test_xsl_functions_declared_in_the_schema_are_usable(engine: XsltEngine, tmp_path: Path) -> None:
    (tmp_path / "schematrons").mkdir()
    sch = tmp_path / "schematrons" / "f.sch"
    sch.write_text(f"""<schema {SCH} queryBinding="xslt2" xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
        xmlns:my="urn:my">
      <ns prefix="my" uri="urn:my"/>
      <xsl:function name="my:double"><xsl:param name="n"/><xsl:sequence select="2 * number($n)"/></xsl:function>
      <pattern id="p"><rule context="n"><assert test="my:double(@v) = 4">pas le double de 2</assert></rule></pattern>
    </schema>""")
    assert run(engine, sch, '<r><n v="2"/></r>') == []
    assert [f.message for f in run(engine, sch, '<r><n v="3"/></r>')] == ["pas le double de 2"]


def test_rule_contexts_become_paths_only_when_the_path_form_is_proven(tmp_path: Path) -> None:
    assert path_contexts(["/", "cda:section[cda:templateId/@root = 'a|b']", "/cda:ClinicalDocument/cda:x",
                          "*[cda:templateId/@root='1.2']/cda:entry | //cda:y[@a = \"]\"]"]) == [
        "/", "//cda:section[cda:templateId/@root = 'a|b']", "/cda:ClinicalDocument/cda:x",
        "//*[cda:templateId/@root='1.2']/cda:entry", "//cda:y[@a = \"]\"]"]
    # Anything but elements (or the document node), a context that depends on the matched node, or that is not
    # a plain path: the pattern keeps the template walk.
    for refused in ("@code", "cda:x/@code", "cda:x/text()", "node()", "comment()", "cda:x[. = current()/@a]",
                    "key('k', 'v')", "$nodes", "(cda:x)", "cda:x union cda:y", "..", "cda:x/.", "attribute::a",
                    "cda:x[", "cda:x | @a", "document-node()"):
        assert path_contexts(["cda:a", refused]) is None, refused


def both(engine: XsltEngine, sch: Path, document: str) -> list[Finding]:
    """The findings of both forms, asserted equal."""
    found = []
    for form in (TEMPLATE, PATH):
        validator = CdaValidator(sch.parent.parent, None, engine)
        validator._compiled[sch.name] = engine.compile(compile_schema(sch, form=form))
        found.append(validator.run_schematron(sch.name, document))
    assert found[0] == found[1]
    return found[1]


def test_the_path_form_keeps_first_match_order_and_nesting(engine: XsltEngine, tmp_path: Path) -> None:
    (tmp_path / "schematrons").mkdir()
    sch = tmp_path / "schematrons" / "first.sch"
    sch.write_text(f"""<schema {SCH} queryBinding="xslt2"><ns prefix="d" uri="urn:d"/>
      <pattern id="p">
        <rule context="d:item[@special]"><assert test="false()">special <value-of select="@id"/></assert></rule>
        <rule context="d:box/d:item"><report test="true()">in a box <value-of select="@id"/></report></rule>
        <rule context="d:item"><assert test="@ok">plain <value-of select="@id"/></assert></rule>
        <rule context="/"><assert test="count(//d:item) &lt; 3">many</assert></rule>
      </pattern>
      <pattern id="q"><rule context="d:item"><assert test="@ok">q <value-of select="@id"/></assert></rule></pattern>
    </schema>""")
    text = compile_schema(sch)
    assert "shallow-skip" not in text  # both patterns run as path searches
    found = both(engine, sch, '<doc xmlns="urn:d"><item id="1"><item id="2" special=""/></item>'
                              '<box><item id="3"/><item id="4" special=""/></box></doc>')
    # Document order within a pattern, the first matching rule only, each node once (item 4 is special and in a
    # box: only "special"), then the next pattern.
    assert [(f.message, f.location) for f in found] == [
        ("many", "/"), ("plain 1", "/doc[1]/item[1]"), ("special 2", "/doc[1]/item[1]/item[1]"),
        ("in a box 3", "/doc[1]/box[1]/item[1]"), ("special 4", "/doc[1]/box[1]/item[2]"),
        ("q 1", "/doc[1]/item[1]"), ("q 2", "/doc[1]/item[1]/item[1]"), ("q 3", "/doc[1]/box[1]/item[1]"),
        ("q 4", "/doc[1]/box[1]/item[2]")]


def test_a_pattern_with_an_attribute_context_keeps_the_template_walk(engine: XsltEngine, tmp_path: Path) -> None:
    """The template walk reaches attributes and text by other roads than elements (the built-in shallow-skip, or
    the matched rule's own apply-templates): the path form is not proven for them, so that pattern (and only it)
    stays a walk, and both forms agree."""
    (tmp_path / "schematrons").mkdir()
    sch = tmp_path / "schematrons" / "attr.sch"
    sch.write_text(f"""<schema {SCH} queryBinding="xslt2"><ns prefix="d" uri="urn:d"/>
      <pattern id="a">
        <rule context="d:item"><assert test="true()">never</assert></rule>
        <rule context="@code"><assert test=". != ''">code vide</assert></rule>
      </pattern>
      <pattern id="b"><rule context="d:item"><assert test="@code">sans code</assert></rule></pattern>
    </schema>""")
    text = compile_schema(sch)
    assert text.count('on-no-match="shallow-skip"') == 1 and text.count('on-no-match="deep-skip"') == 1
    found = both(engine, sch, '<doc xmlns="urn:d" code=""><item code=""/><other code=""/><item/></doc>')
    assert [(f.message, f.location) for f in found] == [
        ("code vide", "/doc[1]/@code"), ("code vide", "/doc[1]/item[1]/@code"), ("code vide", "/doc[1]/other[1]/@code"),
        ("sans code", "/doc[1]/item[2]")]


def test_a_template_id_context_is_looked_up_in_a_key(engine: XsltEngine, tmp_path: Path) -> None:
    (tmp_path / "schematrons").mkdir()
    sch = tmp_path / "schematrons" / "tid.sch"
    sch.write_text(f"""<schema {SCH} queryBinding="xslt2"><ns prefix="d" uri="urn:d"/>
      <pattern id="p">
        <rule context="*[d:templateId/@root = '1.2']/d:entry">
          <assert test="@ok">entrée <value-of select="@n"/></assert></rule>
        <rule context="*[d:templateId/@root = '1.2']"><assert test="@ok">section <value-of select="@n"/></assert></rule>
      </pattern>
    </schema>""")
    text = compile_schema(sch)
    assert "key('loc:templateId-d', '1.2')" in text and 'name="loc:templateId-d"' in text
    found = both(engine, sch, '<doc xmlns="urn:d"><s n="1"><templateId root="1.2"/><entry n="2"/>'
                              '<entry n="3" ok=""><templateId root="1.2"/></entry></s>'
                              '<s n="4"><templateId root="1.3"/><entry n="5"/></s></doc>')
    assert [(f.message, f.location) for f in found] == [
        ("section 1", "/doc[1]/s[1]"), ("entrée 2", "/doc[1]/s[1]/entry[1]")]
