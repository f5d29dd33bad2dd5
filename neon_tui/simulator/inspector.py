"""Test-side introspection of a Simulator; deliberately not reachable through any route."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .config import RequestRecord
from .model import Branch, Project, Role

if TYPE_CHECKING:
    from .core import Simulator


class Inspector:
    def __init__(self, sim: "Simulator") -> None:
        self._sim = sim

    def _settled(self) -> None:
        self._sim.account.settle(self._sim.clock())

    def _role(self, project_id: str, branch_id: str, role_name: str) -> Role:
        return self._sim.account.projects[project_id].branches[branch_id].roles[role_name]

    # --- passwords ---------------------------------------------------------------------------------
    def password(self, project_id: str, branch_id: str, role_name: str) -> str | None:
        """The password a login would be accepted with right now."""
        with self._sim.lock:
            self._settled()
            return self._role(project_id, branch_id, role_name).password

    def accepts(self, project_id: str, branch_id: str, role_name: str, password: str) -> bool:
        with self._sim.lock:
            self._settled()
            current = self._role(project_id, branch_id, role_name).password
            return current is not None and current == password

    def pending_password(self, project_id: str, branch_id: str, role_name: str) -> str | None:
        with self._sim.lock:
            self._settled()
            pending = self._role(project_id, branch_id, role_name).pending
            return pending.password if pending else None

    def reset_count(self, project_id: str, branch_id: str, role_name: str) -> int:
        with self._sim.lock:
            return self._role(project_id, branch_id, role_name).reset_count

    # --- request log and knobs ------------------------------------------------------------------------
    @property
    def requests(self) -> list[RequestRecord]:
        with self._sim.lock:
            return list(self._sim.requests)

    def clear_requests(self) -> None:
        with self._sim.lock:
            self._sim.requests.clear()

    def revoke_key(self, key: str) -> None:
        with self._sim.lock:
            record = self._sim.account.key_by_secret(key)
            if record is None:
                raise KeyError("unknown API key")
            record.revoked = True

    def set_faults(self, rate: float, kinds=None) -> None:
        self._sim.set_faults(rate, kinds)

    def locked(self, project_id: str) -> bool:
        """True while the project has scheduling/running operations (mutations get 423)."""
        with self._sim.lock:
            return self._sim.account.locked(self._sim.account.projects[project_id], self._sim.clock())

    def wake_endpoint(self, endpoint_id: str) -> None:
        """As a connection to an idle compute does: it starts, and for a moment Neon cannot suspend it
        (a reset then gets 423 "endpoint is in some transitive state, could not suspend")."""
        with self._sim.lock:
            endpoint = self.endpoint(endpoint_id)
            self._sim.account.wake(endpoint, self._sim.clock())

    def endpoint(self, endpoint_id: str):
        """The live Endpoint, or KeyError."""
        for project in self._sim.account.projects.values():
            if endpoint_id in project.endpoints:
                return project.endpoints[endpoint_id]
        raise KeyError(endpoint_id)

    # --- topology ------------------------------------------------------------------------------------------
    @property
    def user_id(self) -> str:
        return self._sim.account.user.id

    @property
    def org_ids(self) -> list[str]:
        return [o.id for o in self._sim.account.orgs]

    @property
    def primary_org_id(self) -> str:
        return self._sim.account.orgs[0].id

    @property
    def personal_org_id(self) -> str:
        return next(o.id for o in self._sim.account.orgs if o.personal)

    def org(self, org_id: str):
        """The live Org (members included), or KeyError."""
        org = self._sim.account.org(org_id)
        if org is None:
            raise KeyError(org_id)
        return org

    def org_of(self, project_id: str) -> str:
        return self._sim.account.projects[project_id].org_id

    @property
    def projects(self) -> dict[str, Project]:
        """Live project objects by id (read-only by convention)."""
        return self._sim.account.projects

    def project_ids(self, org_id: str | None = None) -> list[str]:
        return [p.id for p in self._sim.account.projects.values() if org_id is None or p.org_id == org_id]

    def project_by_name(self, name: str) -> Project:
        return next(p for p in self._sim.account.projects.values() if p.name == name)

    def branches(self, project_id: str) -> list[Branch]:
        return list(self._sim.account.projects[project_id].branches.values())

    def branch_ids(self, project_id: str) -> list[str]:
        return list(self._sim.account.projects[project_id].branches)

    def branch_by_name(self, project_id: str, name: str) -> Branch:
        return next(b for b in self.branches(project_id) if b.name == name)

    def default_branch_id(self, project_id: str) -> str:
        return self._sim.account.projects[project_id].default_branch().id

    def role_names(self, project_id: str, branch_id: str) -> list[str]:
        return list(self._sim.account.projects[project_id].branches[branch_id].roles)

    def role(self, project_id: str, branch_id: str, role_name: str) -> Role:
        return self._role(project_id, branch_id, role_name)

    def login_roles(self):
        """Every (project_id, branch_id, role_name) whose password can be reset."""
        out = []
        for p in self._sim.account.projects.values():
            for b in p.branches.values():
                for r in b.roles.values():
                    if not r.protected and not r.no_login:
                        out.append((p.id, b.id, r.name))
        return out
