"""A minimal stand-in for the Kubernetes API server.

No Kubernetes API server can run on the test machines, so the kubernetes
client path is tested against this: a real HTTP server on loopback that
answers the few calls nimrunbook makes (list nodes; read a CronJob; create
and read a Job; list its pods; read a pod's log) with the API's JSON shapes.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class KubeStub:
    def __init__(
        self,
        nodes: list[dict] | None = None,
        job_outcome: str = "succeeded",
        log_text: str = "refreshed 2 NIM templates\n",
    ):
        self.nodes = nodes or []
        self.job_outcome = job_outcome
        self.log_text = log_text
        self.jobs: dict[str, dict] = {}
        self.requests: list[tuple[str, str]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _send(self, code: int, body, content_type: str = "application/json") -> None:
                data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):  # noqa: N802
                stub.requests.append(("GET", self.path))
                path = self.path.split("?")[0]
                if path == "/api/v1/nodes":
                    return self._send(
                        200, {"kind": "NodeList", "apiVersion": "v1", "metadata": {}, "items": stub.nodes}
                    )
                if match := re.fullmatch(r"/apis/batch/v1/namespaces/([^/]+)/cronjobs/([^/]+)", path):
                    if match.group(2) != "custom-templates-cronjob":
                        return self._send(
                            404, {"kind": "Status", "status": "Failure", "reason": "NotFound", "code": 404}
                        )
                    return self._send(
                        200,
                        {
                            "kind": "CronJob",
                            "apiVersion": "batch/v1",
                            "metadata": {"name": match.group(2), "namespace": match.group(1)},
                            "spec": {
                                "schedule": "0 * * * *",
                                "jobTemplate": {
                                    "metadata": {"labels": {"app": "custom-templates"}},
                                    "spec": {
                                        "template": {
                                            "spec": {
                                                "restartPolicy": "Never",
                                                "containers": [
                                                    {
                                                        "name": "custom-templates",
                                                        "image": "registry.example.com/datarobot/custom-templates:11.1",
                                                    }
                                                ],
                                            }
                                        }
                                    },
                                },
                            },
                        },
                    )
                if match := re.fullmatch(r"/apis/batch/v1/namespaces/([^/]+)/jobs/([^/]+)/status", path):
                    job = stub.jobs[match.group(2)]
                    status = (
                        {"succeeded": 1}
                        if stub.job_outcome == "succeeded"
                        else {
                            "failed": 1,
                            "conditions": [
                                {
                                    "type": "Failed",
                                    "status": "True",
                                    "reason": "BackoffLimitExceeded",
                                    "message": "Job has reached the specified backoff limit",
                                }
                            ],
                        }
                    )
                    return self._send(200, {**job, "status": status})
                if match := re.fullmatch(r"/api/v1/namespaces/([^/]+)/pods", path):
                    selector = re.search(r"labelSelector=job-name%3D([^&]+)", self.path)
                    name = selector.group(1) if selector else ""
                    return self._send(
                        200,
                        {
                            "kind": "PodList",
                            "apiVersion": "v1",
                            "metadata": {},
                            "items": [{"metadata": {"name": f"{name}-abcde", "namespace": match.group(1)}}],
                        },
                    )
                if re.fullmatch(r"/api/v1/namespaces/([^/]+)/pods/([^/]+)/log", path):
                    return self._send(200, stub.log_text, "text/plain")
                return self._send(404, {"kind": "Status", "status": "Failure", "reason": "NotFound", "code": 404})

            def do_POST(self):  # noqa: N802
                stub.requests.append(("POST", self.path))
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if re.fullmatch(r"/apis/batch/v1/namespaces/([^/]+)/jobs", self.path.split("?")[0]):
                    stub.jobs[body["metadata"]["name"]] = body
                    return self._send(201, body)
                return self._send(404, {"kind": "Status", "code": 404})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> KubeStub:
        self.thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def kubeconfig(self, directory: Path) -> Path:
        path = directory / "kubeconfig"
        port = self.server.server_address[1]
        path.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "current-context": "stub",
                    "clusters": [{"name": "stub", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
                    "users": [{"name": "stub", "user": {"token": "stub-token"}}],
                    "contexts": [{"name": "stub", "context": {"cluster": "stub", "user": "stub"}}],
                }
            )
        )
        return path
