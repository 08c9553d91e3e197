"""The CDS Hooks 2.0.1 model, apart from HTTP: imports no Flask.

- ``services``: the services this server offers (``ServiceDefinition``, ``HookSpec``) and their prefetch
  templates and discovery document;
- ``validation``: a request body checked into a ``HookCall`` (and feedback entries);
- ``prefetch``: the prefetch plan (what is usable, what to fetch, why) and ``ResolvedData``;
- ``raw_json``: prefetch values kept as raw JSON until read;
- ``errors``: ``CdsError``, the one root of every error answered with an OperationOutcome.

``cds_service.protocol`` serves this model over HTTP; the pipeline reads it and never imports protocol.
"""
