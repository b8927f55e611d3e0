"""HL7 ACKs as an HIE interface engine reads them."""
import hl7

from streams.adt.acks import ack_for
from tests.helpers import CORPUS

MESSAGE = (CORPUS / "msfhirconv_ADT-A03-01.hl7").read_text()


def test_accept_acknowledges_the_control_id():
    ack = hl7.parse(ack_for(MESSAGE, "AA"))
    assert str(ack["MSH.F9.R1.C1"]) == "ACK"
    assert (str(ack["MSA.F1"]), str(ack["MSA.F2"])) == ("AA", "MSG00001")


def test_reject_carries_the_reason_in_msa_and_err():
    ack = hl7.parse(ack_for(MESSAGE, "AR", "missing_facility", "no facility | at all"))
    assert str(ack["MSA.F1"]) == "AR"
    assert "no facility" in str(ack["MSA.F3"]) and "|" not in str(ack["MSA.F3"])
    assert str(ack["ERR.F3.R1.C1"]) == "101"


def test_non_hl7_input_still_gets_a_parseable_ack():
    ack = hl7.parse(ack_for(None, "AR", "not_hl7", "not an HL7 message"))
    assert str(ack["MSA.F1"]) == "AR"
    assert str(ack["ERR.F3.R1.C1"]) == "100"
