"""Delivery: email digests per network, RSS/Atom feeds and iCal calendars.

The flow, and who does I/O::

    digest.build_digests   stored items + history ──▶ Digest      (pure selection over loaded data)
    render.render_digest   Digest ──▶ RenderedDigest (subject, HTML, text)   (Jinja2, autoescape)
    email.build_message    RenderedDigest + member ──▶ Outgoing              (headers, Message-ID)
    delivery.run_digests   record digest + deliveries, then send exactly once (I/O)
    transports             smtp | file                                       (I/O)
    feeds / calendar       stored items ──▶ RSS 2.0, Atom, iCalendar bytes   (pure)
    schedule               the scheduler's digest jobs

What they need from the running service is in ``ports`` (small Protocols that ``App`` and
the ``Scheduler`` satisfy): this package is below the app and the scheduler and imports
neither. Scraped text is untrusted everywhere: ``text`` holds the cleaning helpers.
"""
