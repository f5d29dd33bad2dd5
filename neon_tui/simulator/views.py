"""JSON renderings of simulator state in the exact shapes of the Neon API v2 spec."""

from __future__ import annotations

import datetime as dt

from .model import REGIONS, Account, ApiKey, Branch, Database, Endpoint, Member, Operation, Org, Permission, Project, Role

PARENT_LSN = "0/1E19478"


def stamp(when: dt.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def stamp_us(when: dt.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Views:
    def __init__(self, acct: Account) -> None:
        self.acct = acct

    def ts(self, t: float) -> str:
        return stamp(self.acct.wall(t))

    def org(self, org: Org) -> dict:
        return {"id": org.id, "name": org.name, "handle": org.handle, "plan": org.plan,
                "created_at": self.ts(org.created_t), "managed_by": org.managed_by,
                "updated_at": self.ts(org.created_t), "require_mfa": False}

    def _project_common(self, p: Project) -> dict:
        return {
            "id": p.id, "platform_id": "aws", "region_id": p.region_id, "name": p.name,
            "provisioner": "k8s-neonvm",
            "default_endpoint_settings": {"autoscaling_limit_min_cu": 0.25, "autoscaling_limit_max_cu": 2,
                                          "suspend_timeout_seconds": 0},
            "settings": {"allowed_ips": {"ips": list(p.allowed_ips),
                                         "protected_branches_only": p.protected_branches_only},
                         "enable_logical_replication": False, "block_public_connections": False,
                         "block_vpc_connections": False},
            "pg_version": p.pg_version, "proxy_host": REGIONS[p.region_id][0],
            "branch_logical_size_limit": 512, "branch_logical_size_limit_bytes": 536870912,
            "store_passwords": p.store_passwords, "cpu_used_sec": 0, "creation_source": "console",
            "history_retention_seconds": 86400, "created_at": self.ts(p.created_t),
            "updated_at": self.ts(p.updated_t), "owner_id": p.owner_id, "org_id": p.org_id,
        }

    def project_item(self, p: Project) -> dict:
        item = self._project_common(p)
        item["active_time"] = 0
        org = self.acct.org(p.org_id)
        if org is not None:
            item["org_name"] = org.name
        return item

    def project(self, p: Project, now: float) -> dict:
        body = self._project_common(p)
        wall_now = self.acct.wall(now)
        period_start = wall_now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        user = self.acct.user
        body.update({
            "consumption_period_start": stamp(period_start), "consumption_period_end": stamp(wall_now),
            "active_time_seconds": 0, "compute_time_seconds": 0, "written_data_bytes": 0,
            "data_transfer_bytes": 0, "data_storage_bytes_hour": 0,
            "owner": {"email": user.email, "name": f"{user.name} {user.last_name}", "branches_limit": 5000,
                      "subscription_type": "scale_v3"},
        })
        return body

    def branch(self, b: Branch, now: float) -> dict:
        ready = now >= b.ready_t
        changed = b.ready_t if b.ready_t != float("-inf") else b.created_t
        body = {
            "id": b.id, "project_id": b.project_id, "name": b.name,
            "current_state": "ready" if ready else "init",
            "state_changed_at": self.ts(changed if ready else b.created_t),
            "logical_size": b.logical_size, "creation_source": "console", "primary": b.default,
            "default": b.default, "protected": b.protected, "cpu_used_sec": 0, "compute_time_seconds": 0,
            "active_time_seconds": 0, "written_data_bytes": 0, "data_transfer_bytes": 0,
            "created_at": self.ts(b.created_t), "updated_at": self.ts(b.updated_t),
            "created_by": ({"name": b.created_by, "image": ""} if b.created_by else
                           {"name": f"{self.acct.user.name} {self.acct.user.last_name}", "image": self.acct.user.image}),
            "init_source": "parent-data",
        }
        if not ready:
            body["pending_state"] = "ready"
        if b.parent_id is not None:
            body["parent_id"] = b.parent_id
            body["parent_lsn"] = PARENT_LSN
            body["parent_timestamp"] = self.ts(b.created_t)
        return body

    def member(self, m: Member) -> dict:
        return {"member": {"id": m.id, "user_id": m.user_id, "org_id": m.org_id, "role": m.role,
                           "joined_at": self.ts(m.joined_t)},
                "user": {"email": m.email, "has_mfa": False}}

    def permission(self, p: Permission) -> dict:
        body = {"id": p.id, "granted_to_email": p.email, "granted_at": self.ts(p.granted_t)}
        if p.revoked_t is not None:
            body["revoked_at"] = self.ts(p.revoked_t)
        return body

    def annotation(self, b: Branch) -> dict:
        return {"object": {"type": "console/branch", "id": b.id}, "value": {}}

    def role(self, r: Role, password: str | None = None) -> dict:
        body = {"branch_id": r.branch_id, "name": r.name, "protected": r.protected,
                "authentication_method": "no_login" if r.no_login else "password",
                "created_at": self.ts(r.created_t), "updated_at": self.ts(r.updated_t)}
        if password is not None:
            body["password"] = password
        return body

    def database(self, d: Database) -> dict:
        return {"id": d.id, "branch_id": d.branch_id, "name": d.name, "owner_name": d.owner_name,
                "created_at": self.ts(d.created_t), "updated_at": self.ts(d.updated_t)}

    def endpoint(self, e: Endpoint, project: Project, now: float) -> dict:
        busy = any(op.endpoint_id == e.id and op.active(now) for op in reversed(project.operations))
        state = "init" if e.transitive(now) else "active" if busy else e.current_state
        body = {
            "host": e.host, "id": e.id, "project_id": e.project_id, "branch_id": e.branch_id,
            "autoscaling_limit_min_cu": 0.25, "autoscaling_limit_max_cu": 2, "region_id": e.region_id,
            "type": e.type, "current_state": state, "settings": {},
            "pooler_enabled": False, "pooler_mode": "transaction", "disabled": False,
            "passwordless_access": True, "last_active": "2000-01-01T00:00:00Z", "creation_source": "console",
            "created_at": self.ts(e.created_t), "updated_at": self.ts(e.updated_t),
            "proxy_host": REGIONS[e.region_id][1], "suspend_timeout_seconds": 0, "provisioner": "k8s-neonvm",
        }
        if state == "init":
            body["pending_state"] = "active"
        return body

    def operation(self, op: Operation, now: float) -> dict:
        status = op.status(now)
        if status == "scheduling":
            updated, duration = op.created_t, 0.0
        elif status == "running":
            updated, duration = op.start_t, now - op.start_t
        else:
            updated, duration = op.end_t, op.end_t - op.start_t
        body = {"id": op.id, "project_id": op.project_id, "action": op.action, "status": status,
                "failures_count": 1 if status == "failed" else 0, "created_at": stamp(op.created_at),
                "updated_at": self.ts(max(updated, op.created_t)), "total_duration_ms": int(duration * 1000)}
        if op.branch_id:
            body["branch_id"] = op.branch_id
        if op.endpoint_id:
            body["endpoint_id"] = op.endpoint_id
        if status == "failed" and op.error:
            body["error"] = op.error
        return body

    def creator(self) -> dict:
        u = self.acct.user
        return {"id": u.id, "name": f"{u.name} {u.last_name}", "image": u.image}

    def key_item(self, k: ApiKey) -> dict:
        body = {"id": k.id, "name": k.name, "created_at": self.ts(k.created_t), "created_by": self.creator(),
                "last_used_at": None if k.last_used_t is None else self.ts(k.last_used_t),
                "last_used_from_addr": k.last_used_from_addr}
        if k.project_id:
            body["project_id"] = k.project_id
        return body

    def key_created(self, k: ApiKey) -> dict:
        body = {"id": k.id, "key": k.key, "name": k.name, "created_at": self.ts(k.created_t),
                "created_by": k.created_by}
        if k.project_id:
            body["project_id"] = k.project_id
        return body

    def key_revoked(self, k: ApiKey) -> dict:
        body = {"id": k.id, "name": k.name, "created_at": self.ts(k.created_t), "created_by": k.created_by,
                "last_used_at": None if k.last_used_t is None else self.ts(k.last_used_t),
                "last_used_from_addr": k.last_used_from_addr, "revoked": k.revoked}
        if k.project_id:
            body["project_id"] = k.project_id
        return body
