"""One adapter per peer (docs/contracts.md): ``ai`` the AI Reply Generator,
``sms`` the SMS Gateway, ``smtp`` the mail server, ``imap`` the Sent folder;
``http`` is what the two HTTP peers share. Each implements a port of
:mod:`streams.stages.ports` and raises only :mod:`handlers.errors`."""
