"""NAT2 in every HL7 Genomics Reporting IG shape, through the HTTP API (issue 14 item 4): the genotype or
phenotype in valueCodeableConcept, valueString or a component; the gene by HGNC code or by symbol in any
component; a therapeutic implication that names no gene but derives from a NAT2 genotype. Another gene's
*5/*6 is not NAT2's.

Shapes follow the IG (github.com/HL7/genomics-reporting): Genotype code LOINC 84413-4 with
component[gene-studied] 48018-6 (input/fsh/CGFindings.fsh); HGNC system http://www.genenames.org
(input/fsh/Aliases.fsh), http://www.genenames.org/geneId in the STU1 examples; TherapeuticImplication with
component[therapeutic-implication] LA9657-3 and derivedFrom the genotype (input/fsh/CGExamples.fsh TxImp01).
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from helpers.builders import topics
from helpers.fixture_calls import cards_for, make_client, request_for, with_nat2

NAT2 = "nat2-poor-metabolizer"
LOINC = "http://loinc.org"
TBD = "http://hl7.org/fhir/uv/genomics-reporting/CodeSystem/tbd-codes-cs"
GENOTYPE_CODE = {"coding": [{"system": LOINC, "code": "84413-4", "display": "Genotype display name"}]}
POOR = {"coding": [{"system": LOINC, "code": "LA9657-3", "display": "Poor metabolizer"}]}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return make_client(tmp_path_factory.mktemp("data"))


def gene_studied(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    coding = {"system": system, "code": code} | ({"display": display} if display else {})
    return {
        "code": {"coding": [{"system": LOINC, "code": "48018-6", "display": "Gene studied [ID]"}]},
        "valueCodeableConcept": {"coding": [coding]},
    }


def component(code: str, system: str = LOINC, **value: Any) -> dict[str, Any]:
    return {"code": {"coding": [{"system": system, "code": code}]}, **value}


NAT2_BY_HGNC = gene_studied("http://www.genenames.org", "HGNC:7646")
NAT2_BY_SYMBOL = gene_studied("http://example.org/lab-genes", "NAT2", "NAT2")
NAT2_BY_BARE_NUMBER = gene_studied("http://www.genenames.org/geneId", "7646")
CYP2D6 = gene_studied("http://www.genenames.org", "HGNC:2625", "CYP2D6")


@pytest.mark.parametrize(
    "fields",
    [
        # genotype in a sibling component of the gene studied (the shape issue 14 found missed)
        {"code": GENOTYPE_CODE, "component": [NAT2_BY_HGNC, component("84413-4", valueString="*5/*6")]},
        {
            "code": GENOTYPE_CODE,
            "component": [NAT2_BY_SYMBOL, component("84413-4", valueCodeableConcept={"text": "*5/*6"})],
        },
        {
            "code": GENOTYPE_CODE,
            "component": [NAT2_BY_BARE_NUMBER, component("84413-4", valueString="*6/*5")],
        },
        {
            "code": GENOTYPE_CODE,
            "component": [
                gene_studied("https://www.genenames.org/geneId", "HGNC:7646"),
                component("84413-4", valueString="*5/*6"),
            ],
        },
        # the diplotype as the Observation's valueString, gene by HGNC code only
        {"code": GENOTYPE_CODE, "component": [NAT2_BY_HGNC], "valueString": "*5/*6"},
        # the phenotype in a component: the IG's therapeutic-implication, or the older 53040-2
        {
            "code": GENOTYPE_CODE,
            "component": [NAT2_BY_HGNC, component("therapeutic-implication", TBD, valueCodeableConcept=POOR)],
        },
        {
            "code": GENOTYPE_CODE,
            "component": [NAT2_BY_SYMBOL, component("53040-2", valueCodeableConcept=POOR)],
        },
        # the older shape: LOINC 53040-2 naming NAT2 in its text, the phenotype as the value
        {
            "code": {"coding": [{"system": LOINC, "code": "53040-2"}], "text": "NAT2 acetylator status"},
            "valueCodeableConcept": POOR,
        },
    ],
)
def test_every_ig_shape_of_a_nat2_poor_result_raises_the_card(client: Any, fields: dict[str, Any]) -> None:
    assert topics(cards_for(client, with_nat2(**fields))) == [NAT2]


@pytest.mark.parametrize(
    "fields",
    [
        {"code": GENOTYPE_CODE, "component": [CYP2D6, component("84413-4", valueString="*5/*6")]},
        {"code": GENOTYPE_CODE, "component": [CYP2D6], "valueString": "*5/*6"},
        {"code": GENOTYPE_CODE, "component": [CYP2D6, component("53040-2", valueCodeableConcept=POOR)]},
        # 7646 in the HGNC gene GROUP system is a group id, not NAT2
        {
            "code": GENOTYPE_CODE,
            "component": [
                gene_studied("http://www.genenames.org/genegroup", "7646"),
                component("84413-4", valueString="*5/*6"),
            ],
        },
        # NAT2 and another gene studied: a bare sibling diplotype is not known to be NAT2's
        {
            "code": GENOTYPE_CODE,
            "component": [NAT2_BY_HGNC, CYP2D6, component("84413-4", valueString="*5/*6")],
        },
        # NAT2 rapid in a sibling component
        {"code": GENOTYPE_CODE, "component": [NAT2_BY_HGNC, component("84413-4", valueString="*4/*4")]},
    ],
)
def test_another_genes_or_a_normal_result_raises_no_card(client: Any, fields: dict[str, Any]) -> None:
    assert NAT2 not in topics(cards_for(client, with_nat2(**fields)))


def _implication_with_genotype(genotype_gene: dict[str, Any]) -> dict[str, Any]:
    """The IG pair: a Genotype and a TherapeuticImplication that names no gene, derived from it."""
    request = with_nat2(code=GENOTYPE_CODE, component=[genotype_gene], valueString="*4/*5")
    (entry,) = request["prefetch"]["nat2"]["entry"]
    implication = copy.deepcopy(entry["resource"])
    implication.update(
        id="amf-pgx-implication",
        code={"coding": [{"system": TBD, "code": "therapeutic-implication"}]},
        derivedFrom=[{"reference": f"Observation/{entry['resource']['id']}"}],
        component=[
            component("therapeutic-implication", TBD, valueCodeableConcept=POOR),
            component("51963-7", valueCodeableConcept={"text": "amifampridine"}),
        ],
        effectiveDateTime="2024-06-01",  # newer than the genotype: read first
    )
    del implication["valueString"]
    request["prefetch"]["nat2"]["entry"].append({"resource": implication})
    return request


def test_a_therapeutic_implication_derived_from_a_nat2_genotype_is_nat2s(client: Any) -> None:
    assert topics(cards_for(client, _implication_with_genotype(NAT2_BY_HGNC))) == [NAT2]


def test_a_therapeutic_implication_derived_from_another_gene_is_not(client: Any) -> None:
    assert NAT2 not in topics(cards_for(client, _implication_with_genotype(CYP2D6)))


def test_the_fixture_shape_is_unchanged(client: Any) -> None:
    assert topics(cards_for(client, request_for("nat2-genotype-5-6"))) == [NAT2]
