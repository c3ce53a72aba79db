"""telephony-fsm: the sans-IO engine of the telephony interaction destination."""
