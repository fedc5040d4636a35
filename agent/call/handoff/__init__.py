"""The handoff to a person: one mechanism (`core.py`) and its ends, the front desk (`desk.py`)
and the SIP transfer (`transfer.py`), sharing one vocabulary (`types.py`)."""
