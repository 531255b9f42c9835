"""The supervisor: the registry of packages and one worker per graph."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import shutil
import time
import uuid
from pathlib import Path

from headrace.names import path_under
from headrace.packages import ManifestError, PackageError, extract_package, parse_manifest
from headrace.server.config import ServerConfig
from headrace._logging import install_rate_limit
from headrace.supervisor.confinement import Confinement
from headrace.supervisor.process import GraphWorker, WorkerSpec, check_package
from headrace.supervisor.records import kill_all_stale
from headrace.supervisor.registry import PackageRecord, Registry
from headrace.supervisor.sandbox import Limits

__all__ = ["DeployError", "Supervisor"]

log = logging.getLogger("headrace.supervisor")


class DeployError(Exception):
    """An upload that cannot be deployed; ``code`` is the API's error slug."""

    def __init__(self, message: str, code: str, problems: list[str] | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.problems = problems or [message]


class Supervisor:
    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        config.data_dir.mkdir(parents=True, exist_ok=True)
        self.confinement = Confinement(config)
        self.registry = Registry(config.data_dir / "server.db")
        self.confinement.secure_data_dir()
        if self.confinement.confined:
            log.info("%s", self.confinement.describe())
        else:
            log.warning(
                "%s. %s",
                self.confinement.describe(),
                "Every tenant's uploads are trusted (--trust-uploads)"
                if config.trust_uploads
                else "Uploads are accepted from one tenant only (start with --trust-uploads to allow more)",
            )
        self.workers: dict[tuple[str, str], GraphWorker] = {}
        self.restarts_total = 0
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    # --- lifecycle ----------------------------------------------------------

    async def start(self) -> None:
        """Kills what a crashed earlier server left running in this data dir,
        then starts a worker for every registered graph."""
        install_rate_limit(*(logging.getLogger(n) for n in ("", "uvicorn", "uvicorn.error", "uvicorn.access")))
        killed = await asyncio.to_thread(kill_all_stale, self.config.data_dir.resolve() / "run" / "workers")
        if killed:
            log.warning("killed %d worker process group(s) left by an earlier server", killed)
        for record in self.registry.list():
            self._start(record)

    async def shutdown(self) -> None:
        """Checkpoints and stops every worker."""
        await asyncio.gather(*(w.stop() for w in self.workers.values()), return_exceptions=True)
        self.registry.close()

    def _start(self, record: PackageRecord) -> GraphWorker:
        spec = WorkerSpec(record.tenant, record.graph, Path(record.path), record.version)
        worker = GraphWorker(spec, self.config, self.confinement, on_restart=self._count_restart)
        worker.accumulators = [a for a in record.accumulators.split(",") if a]
        worker.record = record
        self.workers[(record.tenant, record.graph)] = worker
        worker.start()
        return worker

    def _count_restart(self, worker: GraphWorker) -> None:
        self.restarts_total += 1

    def _lock(self, tenant: str, graph: str) -> asyncio.Lock:
        return self._locks.setdefault((tenant, graph), asyncio.Lock())

    # --- queries ------------------------------------------------------------

    def graphs(self, tenant: str) -> list[GraphWorker]:
        return [w for (t, _), w in sorted(self.workers.items()) if t == tenant]

    def worker(self, tenant: str, graph: str) -> GraphWorker | None:
        return self.workers.get((tenant, graph))

    def ready(self) -> tuple[bool, str]:
        states = [w.state for w in self.workers.values()]
        down = sum(1 for s in states if s in ("crash_loop", "restarting"))
        starting = sum(1 for s in states if s == "starting")
        if down:
            return False, f"{down} graph(s) crashed"
        if starting:
            return False, f"{starting} graph(s) starting"
        return True, f"{len(states)} graph(s) running"

    # --- deploys ------------------------------------------------------------

    async def deploy(
        self, tenant: str, archive: bytes, allowed: tuple[str, ...] | None = None
    ) -> tuple[PackageRecord, PackageRecord | None]:
        """Checks an uploaded archive (its graph must be in ``allowed``, if
        given), loads it in a throwaway worker, and then
        replaces the graph's running version (the old worker checkpoints and
        stops; the new one restores the accumulators that still exist).

        Raises:
            DeployError: naming what is wrong; nothing running is touched.
        """
        incoming = self.config.data_dir / "packages" / ".incoming" / uuid.uuid4().hex
        try:
            try:
                root = await asyncio.to_thread(extract_package, archive, incoming, self.config.limits.package)
                manifest = parse_manifest((root / "package.toml").read_text(encoding="utf-8"))
            except PackageError as e:
                raise DeployError(str(e), e.code) from e
            except ManifestError as e:
                raise DeployError(str(e), "bad_manifest", e.problems) from e
            if allowed is not None and manifest.graph_name not in allowed:
                # As for any graph outside a key's scope: not found, not forbidden.
                raise DeployError("not found", "not_found", status=404)
            self._check_trust(tenant)
            limits = Limits(**manifest.limits)
            too_high = self.confinement.limits.exceeded_by(limits)
            if too_high:
                raise DeployError("; ".join(too_high), "bad_manifest", too_high)
            self.confinement.share_package(tenant, incoming)
            launch = await asyncio.to_thread(self.confinement.launch, tenant, root, check=True, limits=limits)
            report = await check_package(root, launch)
            if report.get("event") != "ok":
                code = str(report.get("code", "package_error"))
                problems = report.get("problems") or [str(report.get("error"))]
                raise DeployError(str(report.get("error")), code, list(problems))
            graph = manifest.graph_name
            digest = hashlib.sha256(archive).hexdigest()
            final = self._version_dir(tenant, graph, manifest.version, digest)
            if final.exists():
                shutil.rmtree(final)
            final.parent.mkdir(parents=True, exist_ok=True)
            (incoming / "archive.tar").write_bytes(archive)
            incoming.rename(final)
            package_root = final / root.relative_to(incoming)
        finally:
            if incoming.exists():
                shutil.rmtree(incoming, ignore_errors=True)
        record = PackageRecord(
            tenant,
            graph,
            manifest.name,
            manifest.version,
            str(package_root),
            digest,
            len(archive),
            time.time(),
            ",".join(report.get("accumulators", [])),
        )
        async with self._lock(tenant, graph):
            old = self.workers.pop((tenant, graph), None)
            if old is not None:
                await old.stop()
            replaced = self.registry.put(record)
            self._start(record)
        if replaced is not None and replaced.path != record.path:
            shutil.rmtree(self._version_dir_of(replaced), ignore_errors=True)
        log.info("tenant '%s': deployed graph '%s' %s", tenant, graph, manifest.version)
        return record, replaced

    def _check_trust(self, tenant: str) -> None:
        """Unconfined, uploaded code can reach every tenant's state: then only
        one tenant may upload, unless the operator trusts them all."""
        if self.confinement.confined or self.config.trust_uploads:
            return
        others = sorted({r.tenant for r in self.registry.list()} - {tenant})
        if others:
            raise DeployError(
                f"this server cannot keep tenants' code apart ({self.confinement.unconfined_because}) and already "
                f"runs packages of tenant '{others[0]}'; it accepts uploads from one tenant only unless it is "
                "started with --trust-uploads",
                "untrusted_tenant",
                status=403,
            )

    def _version_dir(self, tenant: str, graph: str, version: str, sha256: str) -> Path:
        """Where one uploaded version lives (its files and archive.tar)."""
        return path_under(self.config.data_dir, "packages", tenant, graph, f"{version}-{sha256[:12]}")

    def _version_dir_of(self, record: PackageRecord) -> Path:
        return self._version_dir(record.tenant, record.graph, record.version, record.sha256)

    async def remove(self, tenant: str, graph: str) -> PackageRecord | None:
        """Stops the graph and forgets its package; its checkpoints stay in the
        store, so uploading it again resumes its state."""
        async with self._lock(tenant, graph):
            worker = self.workers.pop((tenant, graph), None)
            if worker is not None:
                await worker.stop()
            record = self.registry.delete(tenant, graph)
        if record is not None:
            shutil.rmtree(self._version_dir_of(record), ignore_errors=True)
        return record

    async def restart(self, tenant: str, graph: str) -> GraphWorker | None:
        """Restarts a graph's worker (also one stopped by the crash-loop breaker)."""
        async with self._lock(tenant, graph):
            record = self.registry.get(tenant, graph)
            if record is None:
                return None
            old = self.workers.pop((tenant, graph), None)
            if old is not None:
                await old.stop()
            return self._start(record)

