"""What the notebooks call: one function per step, so that every cell stays a line or two.

Every notebook starts with ``step = runbook.start("<notebook>", globals())``
(its parameters checked, an attempt begun in the run record under the run
folder's lock; see :mod:`nimrunbook.runbook.session`) and ends with
``step.done(...)`` then a "Next:" cell. Each step reads the run's facts and
records its own in its attempt, shows its results as static HTML tables
(readable in the HTML report without any widget JavaScript), and reports
progress the way its ``progress`` parameter says: a widget bar in
JupyterLab, log lines under papermill.
"""

from nimrunbook.runbook.configure import (
    build_and_check_values,
    check_credentials,
    datarobot_settings,
    refresh,
    run_objects,
    update_tag,
)
from nimrunbook.runbook.consumer import readonly_settings, smoke_test_images  # noqa: F401 - re-exported for notebook 09
from nimrunbook.runbook.inputs import (
    bucket_keys,
    gpu_inventory,
    image_entries,
    recorded_s3_settings,
    registry_access,
    s3_settings,
)
from nimrunbook.runbook.inside import bundle_facts, import_bundle, verify_bundle
from nimrunbook.runbook.planning import confirm_selection, make_picker, plan_images, show_inventory
from nimrunbook.runbook.preflight import run_checks
from nimrunbook.runbook.session import Step, begin, start
from nimrunbook.runbook.transfer import create_bundle, download, mirror_images, publish_profiles

__all__ = [
    "Step",
    "begin",
    "bucket_keys",
    "build_and_check_values",
    "bundle_facts",
    "check_credentials",
    "confirm_selection",
    "create_bundle",
    "datarobot_settings",
    "download",
    "gpu_inventory",
    "image_entries",
    "import_bundle",
    "make_picker",
    "mirror_images",
    "plan_images",
    "publish_profiles",
    "recorded_s3_settings",
    "refresh",
    "registry_access",
    "run_checks",
    "run_objects",
    "s3_settings",
    "show_inventory",
    "start",
    "update_tag",
    "verify_bundle",
]
