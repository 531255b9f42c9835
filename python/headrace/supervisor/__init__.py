"""The supervisor: one worker process per graph, restarted from its checkpoint."""

from headrace.supervisor.supervisor import DeployError, Supervisor

__all__ = ["DeployError", "Supervisor"]
