"""The path-search form of the compiled schematrons (what the validator runs) gives the same SVRL as the
template form (the ISO skeleton's recursive walk) on the kit's examples, on the documents the agent builds and on
many deterministic mutated copies of both: the same rules fire on the same nodes in the same order (SVRL
``fired-rule``, compiled in for the comparison), and the same assertions fail and reports succeed, with the same
location and message. This is the proof the speed-up rests on; a schematron that fails it must be compiled in
the template form."""

from __future__ import annotations

import difflib
import random
from collections.abc import Iterator
from copy import deepcopy
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from agent.cda.saxon import XsltEngine
from agent.cda.schematron import PATH, TEMPLATE, compile_schema
from agent.cda.service import CdaService
from agent.cda.validation import CONTENT_PROFILE, STRUCTURATION_MINIMALE, CdaValidator
from agent.clock import FrozenClock
from tests.integration import test_cda_validation as inputs

MUTANTS_PER_DOCUMENT = 12


class Forms:
    """Both compiled forms of every schematron the agent may run, on one Saxon engine."""

    def __init__(self, kit: Path) -> None:
        self.kit = kit
        self.engine = XsltEngine()
        self.validator = CdaValidator(kit, None, self.engine)
        self._compiled: dict[tuple[str, str], Any] = {}

    def executable(self, relative: str, form: str) -> Any:
        key = (relative, form)
        if key not in self._compiled:
            text = compile_schema(self.kit / "schematrons" / relative, form=form, fired_rules=True)
            self._compiled[key] = self.engine.compile(text)
        return self._compiled[key]

    def compare(self, name: str, root: etree._Element) -> int:
        """Run every schematron that applies to ``root`` in both forms; assert equal SVRL; the findings' count."""
        tree = self.engine.parse(etree.tostring(root, encoding="unicode"))
        findings = 0
        for relative in self.validator.schematrons_for(root):
            if not self.validator.has(relative):
                continue
            template = self.engine.transform(self.executable(relative, TEMPLATE), tree)
            path = self.engine.transform(self.executable(relative, PATH), tree)
            if template != path:
                diff = difflib.unified_diff(template.replace("><", ">\n<").splitlines(),
                                            path.replace("><", ">\n<").splitlines(), "template", "path", n=1,
                                            lineterm="")
                pytest.fail(f"{name}, {relative}: the two forms differ:\n" + "\n".join(list(diff)[:30]))
            findings += template.count("<svrl:failed-assert") + template.count("<svrl:successful-report")
        return findings


@pytest.fixture(scope="module")
def forms(kit: Path) -> Forms:
    return Forms(kit)


def built_documents(validator: CdaValidator) -> dict[str, bytes]:
    """What the agent builds, one of each kind (the inputs of the validation tests)."""
    service = CdaService(clock=FrozenClock(datetime(2026, 1, 5, 9, tzinfo=UTC)), validator=validator,
                         allow_test_oids=True)
    data = {"datamatrix": "]d201034009328572411728123110ABC123\x1d21XYZ789",
            "administered_at": "2026-01-05T10:00:00+01:00", "dose_rank": 2}
    return {
        "built vaccination_note": service.build_document("vaccination_note", inputs.PATIENT, inputs.AUTHOR,
                                                         data).cda,
        "built mesures_enfant": service.build_document("mesures_enfant", inputs.CHILD, inputs.AUTHOR, {
            "measured_at": "2025-01-10", "weight_g": 8600, "height_cm": 71, "head_cm": 45}).cda,
        "built cse_cs9": service.build_document("cse_cs9", inputs.CHILD, inputs.AUTHOR, inputs.CSE_DATA).cda,
        "built cse_cs8": service.build_document("cse_cs8", inputs.CS8_CHILD, inputs.CS8_AUTHOR,
                                                inputs.CS8_DATA).cda,
        "built n1": service.wrap_pdf(inputs.PDF, "11488-4", "CR", "2026-01-05T10:00:00+01:00", None,
                                     inputs.PATIENT, inputs.AUTHOR).cda,
    }


def mutants(name: str, root: etree._Element, count: int) -> Iterator[tuple[str, etree._Element]]:
    """``count`` deterministic broken copies of ``root``: an element removed or duplicated, a code changed, an
    attribute emptied or removed, a templateId changed, a text emptied, a nullFlavor added (seeded by the name)."""
    rng = random.Random(name)
    operations = ("remove", "duplicate", "code", "empty attribute", "drop attribute", "template", "text",
                  "null flavor")
    for index in range(count):
        copy = deepcopy(root)
        elements = [e for e in copy.iter() if isinstance(e.tag, str) and e is not copy]
        operation = operations[index % len(operations)]
        if operation == "code":
            candidates = [e for e in elements if e.get("code") is not None] or elements
        elif operation == "template":
            candidates = [e for e in elements if etree.QName(e).localname == "templateId"] or elements
        elif operation in ("empty attribute", "drop attribute"):
            candidates = [e for e in elements if e.attrib] or elements
        elif operation == "text":
            candidates = [e for e in elements if (e.text or "").strip()] or elements
        else:
            candidates = elements
        target = rng.choice(candidates)
        parent = target.getparent()
        assert parent is not None
        if operation == "remove":
            parent.remove(target)
        elif operation == "duplicate":
            target.addnext(deepcopy(target))
        elif operation == "code":
            target.set("code", rng.choice(["ZZZ", "", "11488-4", target.get("code", "") + "0"]))
        elif operation in ("empty attribute", "drop attribute"):
            attribute = rng.choice(sorted(target.attrib))
            if operation == "empty attribute":
                target.set(attribute, "")
            else:
                del target.attrib[attribute]
        elif operation == "template":
            target.set("root", rng.choice(["1.2.3.4", target.get("root", "") + ".1", ""]))
        elif operation == "text":
            target.text = ""
        else:
            target.set("nullFlavor", "UNK")
        yield f"{name} ({operation} {copy.getroottree().getpath(target) if operation != 'remove' else ''})", copy


def documents(kit: Path, validator: CdaValidator) -> dict[str, etree._Element]:
    found = {p.name: CdaValidator.parse(p.read_bytes()) for p in sorted((kit / "ExemplesCDA").glob("*.xml"))}
    found.update({name: CdaValidator.parse(cda) for name, cda in built_documents(validator).items()})
    return found


def test_both_forms_agree_on_the_kit_examples_and_the_built_documents(forms: Forms, kit: Path) -> None:
    found = documents(kit, forms.validator)
    assert len(found) >= 20
    for name, root in found.items():
        forms.compare(name, root)


def test_both_forms_agree_on_mutated_copies(forms: Forms, kit: Path) -> None:
    failing = total = 0
    for name, root in documents(kit, forms.validator).items():
        for label, mutant in mutants(name, root, MUTANTS_PER_DOCUMENT):
            total += 1
            failing += forms.compare(label, mutant) > 0
    # The comparison must see failed assertions, not only clean runs: most broken copies break some rule.
    assert total >= 20 * MUTANTS_PER_DOCUMENT
    assert failing >= total // 3, (failing, total)


def test_both_forms_agree_when_every_volet_checks_every_document(forms: Forms, kit: Path) -> None:
    """A volet's schematron on the other volets' documents: many failed assertions at many places."""
    found = {p.name: CdaValidator.parse(p.read_bytes()) for p in sorted((kit / "ExemplesCDA").glob("*.xml"))}
    volets = [r for r in CdaValidator.schematrons() if r not in (STRUCTURATION_MINIMALE, CONTENT_PROFILE)]
    for name, root in found.items():
        tree = forms.engine.parse(etree.tostring(root, encoding="unicode"))
        for relative in volets:
            if forms.validator.has(relative):
                template = forms.engine.transform(forms.executable(relative, TEMPLATE), tree)
                assert forms.engine.transform(forms.executable(relative, PATH), tree) == template, (name, relative)


def test_the_costly_schematrons_run_entirely_in_the_path_form(kit: Path) -> None:
    """No pattern of the structuration minimale or the content profile falls back to the template walk (that is
    where the time goes); the fallback, when a volet needs it, is per pattern."""
    for relative in (STRUCTURATION_MINIMALE, CONTENT_PROFILE):
        text = compile_schema(kit / "schematrons" / relative)
        assert "shallow-skip" not in text, relative
