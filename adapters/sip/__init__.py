"""A real switch: the agent's SIP softphone (PJSIP via pjsua2) and scripted far ends.

Needs the optional extra ``sip`` (``pip install 'telephony-fsm[sip]'``);
without it, importing :mod:`adapters.sip.ua` works and says why SIP cannot run.
"""
