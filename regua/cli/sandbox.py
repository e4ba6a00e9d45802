"""`regua trigger`, `demo` and `gateway-sim`: the sandbox's commands, refused in production."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from regua.cli.common import CommandError, command_runtime, library_chatter_quieted
from regua.runtime import Runtime
from regua.sandbox.dev_record import with_running_dev
from regua.settings import Settings


def cmd_trigger(settings: Settings, args: argparse.Namespace) -> int:
    """Send the webhooks a gateway would post about an account's open charge to a running regua."""
    from regua.sandbox.trigger import Trigger, TriggerError

    if settings.production:
        raise CommandError("`regua trigger` sends test webhooks: it is refused in production")
    settings = with_running_dev(settings)  # a running dev's app and simulator, unless REGUA_PUBLIC_URL says
    with library_chatter_quieted():  # the trigger prints what it sends itself
        runtime = command_runtime(settings)
        trigger = Trigger(runtime, args.url or settings.public_url)
        try:
            trigger.run(args.event, args.account, args.product)
        except TriggerError as error:
            raise CommandError(str(error)) from None
        finally:
            trigger.close()
            runtime.close()
    return 0


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    """December in virtual time on a fresh embedded database, told as it happens."""
    if settings.production:
        raise CommandError("`regua demo` plays in virtual time: unset REGUA_ENV=production")
    from regua.sandbox.demo import run_demo
    from regua.sandbox.demo_stage import DemoFailed

    if not args.verbose:
        logging.getLogger().setLevel(logging.ERROR)
    try:
        return run_demo(settings, sys.stdout, keep=args.keep, year=args.year, smtp_url=args.smtp_url)
    except (FileExistsError, DemoFailed) as error:
        raise CommandError(str(error)) from None


def cmd_gateway_sim(settings: Settings, args: argparse.Namespace) -> int:
    """The Asaas API subset regua uses, with scripted outcomes, posting webhooks back to regua."""
    from regua.sandbox.simulator import run_simulator

    runtime = _shared_clock_runtime(settings)
    try:
        run_simulator(
            args.host,
            args.port,
            args.webhook_url,
            settings.asaas_webhook_token,
            timeout_delay_s=args.timeout_delay,
            clock=None if runtime is None else runtime.clock,
        )
    finally:
        if runtime is not None:
            runtime.close()
    return 0


def _shared_clock_runtime(settings: Settings) -> Runtime | None:
    """A runtime whose clock the standalone simulator dates by, when regua's database is there to
    read it from (outside production); None means the system clock. A missing SQLite file stays missing."""
    from sqlalchemy.engine import make_url

    url = make_url(settings.database_url)
    if settings.production or (url.get_backend_name() == "sqlite" and not Path(url.database or "").is_file()):
        return None
    try:
        return command_runtime(settings)
    except (CommandError, SQLAlchemyError):
        return None
