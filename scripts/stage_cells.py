"""The cells of every stage notebook, read by build_notebooks.py."""

COMMON_GROUPS = ["deployment", "aws", "cluster", "timeouts", "gates"]

BEGIN = """from runbook_lib.stage import begin

stage = begin({name!r}, globals())"""

NOTEBOOKS = {
    "00_preflight.ipynb": {
        "title": """# 00 Preflight

Before anything is created, check that the chosen target has what the runbook needs. On the
**eks** target that is AWS credentials (checked through STS), `eksctl`, `helm` and `docker`; on the
**sandbox** target everything runs on this machine, so only the sandbox's own parts are checked.
The parameters are validated too, and every secret source must resolve (the values themselves are
never shown). All problems are reported together in one message.""",
        "groups": COMMON_GROUPS + ["database", "secrets", "images", "app", "autoscaling"],
        "cells": [
            ("md", "Load and validate the parameters, and connect to the target. The lines "
                   "below say which target this run acts on and how it is reached."),
            ("code", BEGIN.format(name="preflight")),
            ("md", "Who does the runbook act as on AWS? On the sandbox this is moto's fixed "
                   "test account."),
            ("code", "from runbook_lib.stages import preflight\n\n"
                     "preflight.caller_identity(stage)"),
            ("md", "Every check at once: AWS access, the command-line tools (or their sandbox "
                   "stand-ins) and the secret sources. A failure lists everything missing."),
            ("code", "found = preflight.check(stage)"),
            ("code", "stage.publish(**{'aws_account': found.get('aws account', '')})\n"
                     "stage.finish()"),
        ],
    },
}
