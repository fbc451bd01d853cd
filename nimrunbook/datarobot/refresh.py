"""Trigger DataRobot's custom-templates refresh (the guide's §4.1) instead of waiting for the hourly run.

Where a kubeconfig reaches the cluster, the Job is created from the CronJob's
own jobTemplate through the kubernetes client, watched to the end, and its
logs streamed; otherwise the exact kubectl commands are printed to run by hand.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from nimrunbook.errors import NimRunbookError

log = logging.getLogger(__name__)

CRONJOB = "custom-templates-cronjob"


def refresh_commands(namespace: str, job_name: str | None = None) -> str:
    """The guide's commands with the namespace filled in, for a person at a kubectl prompt."""
    name = job_name or "custom-templates-manual-$(date +%s)"
    return (
        f"export NS={namespace}\n"
        f"export JOB_NAME={name}\n"
        f"kubectl create job --from=cronjob/{CRONJOB} $JOB_NAME -n $NS\n"
        f"kubectl logs job/$JOB_NAME -n $NS -f\n"
    )


@dataclass
class RefreshResult:
    job: str
    namespace: str
    succeeded: bool
    reason: str
    logs: list[str] = field(default_factory=list)
    seconds: float = 0.0


def run_refresh(
    namespace: str,
    *,
    kubeconfig: str | None = None,
    context: str | None = None,
    timeout: float = 900,
    poll: float = 2.0,
) -> RefreshResult:
    """Create a Job from the CronJob's jobTemplate, wait for it, collect its logs, report how it ended."""
    from kubernetes import client, config
    from kubernetes.client.rest import ApiException

    try:
        config.load_kube_config(config_file=kubeconfig, context=context)
    except Exception as exc:  # noqa: BLE001 - the loader raises several unrelated types
        raise NimRunbookError(
            f"Cannot load the kubeconfig ({type(exc).__name__}: {exc}).",
            hint="Run the printed kubectl commands from a host that reaches the cluster instead:\n"
            + refresh_commands(namespace),
        ) from exc
    batch, core = client.BatchV1Api(), client.CoreV1Api()
    started = time.monotonic()
    try:
        cronjob = batch.read_namespaced_cron_job(CRONJOB, namespace)
    except ApiException as exc:
        raise NimRunbookError(
            f"Cannot read cronjob/{CRONJOB} in namespace {namespace} ({exc.status} {exc.reason}).",
            hint="Check the namespace DataRobot runs in and that your account may read CronJobs and create Jobs there.",
        ) from exc
    name = f"custom-templates-manual-{int(time.time())}"
    template = cronjob.spec.job_template
    job = client.V1Job(
        api_version="batch/v1",
        kind="Job",
        metadata=client.V1ObjectMeta(
            name=name,
            namespace=namespace,
            labels=(template.metadata.labels if template.metadata else None),
            annotations={"cronjob.kubernetes.io/instantiate": "manual"},
        ),
        spec=template.spec,
    )
    batch.create_namespaced_job(namespace, job)
    log.info("created job/%s in %s from cronjob/%s", name, namespace, CRONJOB)
    status = None
    while time.monotonic() - started < timeout:
        status = batch.read_namespaced_job_status(name, namespace).status
        if (status.succeeded or 0) > 0 or (status.failed or 0) > 0:
            break
        time.sleep(poll)
    logs: list[str] = []
    for pod in core.list_namespaced_pod(namespace, label_selector=f"job-name={name}").items:
        text = core.read_namespaced_pod_log(pod.metadata.name, namespace)
        for line in text.splitlines():
            log.info("[%s] %s", pod.metadata.name, line)
            logs.append(line)
    seconds = round(time.monotonic() - started, 3)
    if status is not None and (status.succeeded or 0) > 0:
        return RefreshResult(name, namespace, True, "the job completed", logs, seconds)
    conditions = (
        [f"{c.type}: {c.reason} {c.message or ''}".strip() for c in (status.conditions or [])] if status else []
    )
    reason = "; ".join(conditions) or (
        "the job failed" if status and status.failed else f"not finished after {timeout:.0f} s"
    )
    return RefreshResult(name, namespace, False, reason, logs, seconds)
