"""Record templates with Qlib's names: SignalRecord, SigAnaRecord, PortAnaRecord."""

from qrecorder.records.base import RecordTemp
from qrecorder.records.port_ana_record import PortAnaRecord
from qrecorder.records.sig_ana_record import SigAnaRecord
from qrecorder.records.signal_record import SignalRecord

__all__ = ["PortAnaRecord", "RecordTemp", "SigAnaRecord", "SignalRecord"]
