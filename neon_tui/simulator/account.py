"""Builds the deterministic account topology: the curated demo account or one of explicit size."""

from __future__ import annotations

import datetime as dt
import random

from .config import SimConfig
from .model import DAY, REGIONS, Account, Branch, Database, Member, Org, Permission, Project, Role

OWNER = "neondb_owner"
EXTRA_ROLE_NAMES = ("app", "readonly", "migrator", "analytics", "etl", "reporting", "api",
                    "worker", "backup", "admin_ro")

# Curated demo account. Role spec: a name, or (name, flag) where flag is "no_login" or "protected".
# Tree entries: (branch name, parent name or None, protected, endpoint types).
DEMO_ORGS = [
    {
        "name": "Acme Robotics", "handle": "acme-robotics", "plan": "scale", "managed_by": "console",
        "projects": [
            {
                "name": "acme-prod", "region": "aws-us-east-2", "pg": 17, "store": True, "age": 410,
                "roles": [OWNER, "app", "readonly", "migrator", "data team", ("reporting", "no_login"),
                          ("authenticator", "protected")],
                "dbs": [("neondb", OWNER), ("analytics", "data team")],
                "tree": [
                    ("main", None, True, ("read_write", "read_only")),
                    ("staging", "main", False, ("read_write",)),
                    ("preview/pr-142", "staging", False, ("read_write",)),
                    ("preview/pr-157", "staging", False, ()),
                    ("dev/alice", "main", False, ("read_write",)),
                ],
                # Roles created after branching exist on that branch only.
                "later_roles": {"main": ["svc_billing"], "dev/alice": ["alice_debug"]},
                # IP Allow on the protected branch only (an office range; 127.0.0.1 keeps demo logins
                # through the loopback router working): unprotected branches stay open to everyone.
                "allowed_ips": (["203.0.113.0/24", "127.0.0.1"], True),
            },
            {
                "name": "acme-analytics", "region": "aws-eu-central-1", "pg": 16, "store": True, "age": 260,
                "roles": [OWNER, "café_rw", "etl/loader", "readonly"],
                "dbs": [("neondb", OWNER), ("warehouse", "etl/loader")],
                "tree": [
                    ("main", None, False, ("read_write", "read_only")),
                    ("dev/carol", "main", False, ("read_write",)),
                    ("backfill-2025", "main", False, ()),
                ],
                "later_roles": {},
                "allowed_ips": (["198.51.100.0/24", "192.0.2.10-192.0.2.20", "127.0.0.1"], False),
            },
            {
                "name": "acme-legacy-billing", "region": "aws-us-east-2", "pg": 15, "store": False, "age": 700,
                "roles": [OWNER, "o'brien", "app"],
                "dbs": [("billing", OWNER)],
                "tree": [
                    ("main", None, False, ("read_write",)),
                    ("hotfix", "main", False, ()),
                ],
                "later_roles": {},
            },
            {
                "name": "acme-ml-features", "region": "aws-us-west-2", "pg": 17, "store": True, "age": 90,
                "roles": [OWNER, "app", "ml_svc"],
                "dbs": [("neondb", OWNER), ("features", "ml_svc")],
                "tree": [
                    ("production", None, True, ("read_write",)),
                    ("experiments", "production", False, ("read_only",)),
                    ("experiments/embeddings-v2", "experiments", False, ("read_write",)),
                ],
                "later_roles": {},
            },
        ],
    },
    {
        "name": "Dana Kowalski", "handle": "dana-kowalski", "plan": "free", "managed_by": "console",
        "personal": True,
        "projects": [
            {
                "name": "side-project", "region": "aws-us-east-2", "pg": 17, "store": True, "age": 150,
                "roles": [OWNER, "app"],
                "dbs": [("neondb", OWNER)],
                "tree": [("main", None, False, ("read_write",)), ("dev", "main", False, ("read_write",))],
                "later_roles": {},
            },
            {
                "name": "blog", "region": "aws-eu-central-1", "pg": 16, "store": True, "age": 520,
                "roles": [OWNER],
                "dbs": [("neondb", OWNER)],
                "tree": [("main", None, False, ("read_write",))],
                "later_roles": {},
            },
        ],
    },
    {
        "name": "vercel-acme-storefront", "handle": "vercel-acme-storefront", "plan": "launch",
        "managed_by": "vercel",
        "projects": [
            {
                "name": "acme-storefront", "region": "aws-us-east-2", "pg": 17, "store": True, "age": 60,
                "roles": [OWNER, "app", "readonly"],
                "dbs": [("neondb", OWNER)],
                "tree": [
                    ("main", None, False, ("read_write",)),
                    ("preview/feat-checkout", "main", False, ("read_write",)),
                    ("preview/fix-cart", "main", False, ()),
                ],
                "later_roles": {},
            },
            {
                "name": "acme-storefront-staging", "region": "aws-us-west-2", "pg": 17, "store": True, "age": 45,
                "roles": [OWNER, "app"],
                "dbs": [("neondb", OWNER)],
                "tree": [("main", None, False, ("read_write",)), ("dev", "main", False, ("read_write",))],
                "later_roles": {},
            },
        ],
    },
]


def build_account(cfg: SimConfig, epoch: dt.datetime, t0: float) -> Account:
    acct = Account(cfg.seed, epoch, t0, cfg.op_seconds)
    ids = acct.ids
    acct.user.id = ids.uuid()
    acct.user.name, acct.user.last_name = "Dana", "Kowalski"
    acct.user.email = "dana@acme-robotics.dev"
    acct.user.login = "dana-kowalski"
    acct.user.image = "https://avatars.githubusercontent.com/u/1234567?v=4"
    explicit = any(v is not None for v in (cfg.projects, cfg.branches, cfg.roles))
    for spec in DEMO_ORGS:
        org = Org(ids.org(), spec["name"], "", spec["plan"], spec["managed_by"],
                  t0 - 800 * DAY + acct.rng.uniform(0, 60 * DAY), spec.get("personal", False))
        org.handle = f"{spec['handle']}-{org.id}"
        acct.orgs.append(org)
    if explicit:
        _build_sized(acct, cfg, t0)
    else:
        for org, spec in zip(acct.orgs, DEMO_ORGS):
            for pspec in spec["projects"]:
                _build_project(acct, org, pspec, t0)
    acct.new_key("neon-tui", t0 - 3 * DAY, secret=cfg.api_key)
    acct.new_key("ci-deploy", t0 - 200 * DAY)
    # Added last so every id and password drawn above stays what it was before members existed.
    for org in acct.orgs:
        org.members.append(Member(ids.uuid(), acct.user.id, org.id, acct.user.email, "admin", org.created_t))
    if not explicit:
        _plant_drill(acct, t0)
    _seed_active_computes(acct, cfg.seed, explicit)
    return acct


# Demo projects whose production compute serves traffic at rest (active, not suspended): a reset there drops
# live connections. Kept off acme-prod so the screenshots of its staging branch stay as they are.
DEMO_ACTIVE = ("acme-analytics", "acme-storefront")


def _seed_active_computes(acct: Account, seed: int, explicit: bool) -> None:
    """Make the default branch's read-write compute active in some projects: the demo's DEMO_ACTIVE, and about
    a third of a sized account's, drawn from a stream of their own so no id or password moves."""
    pick = random.Random(seed * 7907 + 11)
    for project in acct.projects.values():
        endpoint = project.rw_endpoint(project.default_branch().id)
        chosen = pick.random() < 1 / 3 if explicit else project.name in DEMO_ACTIVE
        if endpoint is not None and chosen:
            endpoint.current_state = "active"


HOUR = 3600.0
# The demo's leak happened DEMO_LEAK_HOURS before the simulator started (see simulator/leak.py). What an
# attacker did since, for the audit drill to find: an admin who joined, project access granted to them, a
# branch they created off acme-ml-features' production and a login role on it.
DEMO_LEAK_HOURS = 48.0
DEMO_INTRUDER = "jordan.hale.ops@proton.me"
DEMO_MEMBERS = {  # org handle -> (email, role, age in days)
    "acme-robotics": [("ops@acme-robotics.dev", "admin", 500), ("priya.n@acme-robotics.dev", "member", 300),
                      (DEMO_INTRUDER, "admin", 20 / 24)],
}
DEMO_PERMISSIONS = {  # project name -> (email, age in days)
    "acme-prod": [("contractor@northwind-consulting.example", 120)],
    "acme-ml-features": [(DEMO_INTRUDER, 19 / 24)],
}
DEMO_PLANTED_BRANCH = ("acme-ml-features", "production", "export-tmp", "Jordan Hale", 18 * HOUR)
DEMO_PLANTED_ROLE = ("export-tmp", "sync_svc", 17 * HOUR)


def _plant_drill(acct: Account, t0: float) -> None:
    ids = acct.ids
    for org in acct.orgs:
        handle = org.handle.removesuffix(f"-{org.id}")
        for email, role, days in DEMO_MEMBERS.get(handle, []):
            org.members.append(Member(ids.uuid(), ids.uuid(), org.id, email, role, t0 - days * DAY))
    by_name = {p.name: p for p in acct.projects.values()}
    for name, grants in DEMO_PERMISSIONS.items():
        for email, days in grants:
            by_name[name].permissions.append(Permission(ids.uuid(), email, t0 - days * DAY))
    pname, parent_name, branch_name, creator, age = DEMO_PLANTED_BRANCH
    project = by_name[pname]
    parent = next(b for b in project.branches.values() if b.name == parent_name)
    branch, _, _ = acct.create_branch(project, parent, branch_name, t0 - age, history=True)
    branch.created_by = creator
    on, role_name, role_age = DEMO_PLANTED_ROLE
    assert on == branch_name
    acct.create_role(project, branch, role_name, False, t0 - role_age, history=True)


def _new_project(acct: Account, org: Org, name: str, region: str, pg: int, store: bool, created: float) -> Project:
    project = Project(acct.ids.project(), name, org.id, region, pg, store, created, created, acct.user.id)
    acct.projects[project.id] = project
    acct.add_op(project, "create_timeline", created, created, created + 2, None)
    return project


def _root_branch(acct: Account, project: Project, name: str, protected: bool, created: float,
                 roles: list, dbs: list[tuple[str, str]]) -> Branch:
    branch = Branch(acct.ids.branch(), project.id, name, None, created, created, default=True, protected=protected)
    for spec in roles:
        role_name, flag = (spec, None) if isinstance(spec, str) else spec
        no_login = flag == "no_login"
        branch.roles[role_name] = Role(branch.id, role_name, None if no_login else acct.ids.password(),
                                       created, created, protected=flag == "protected", no_login=no_login)
    for db_name, owner in dbs:
        branch.databases[db_name] = Database(acct.ids.int_id(), branch.id, db_name, owner, created, created)
    project.branches[branch.id] = branch
    return branch


def _start_endpoints(acct: Account, project: Project, branch: Branch, types, t: float) -> None:
    for ty in types:
        ep = acct.add_endpoint(project, branch, ty, t)
        acct.add_op(project, "start_compute", t, t, t + 3, branch.id, ep.id)


def _build_project(acct: Account, org: Org, spec: dict, t0: float) -> None:
    rng = acct.rng
    created = t0 - spec["age"] * DAY + rng.uniform(0, DAY)
    project = _new_project(acct, org, spec["name"], spec["region"], spec["pg"], spec["store"], created)
    by_name: dict[str, Branch] = {}
    t = created
    for name, parent_name, protected, eps in spec["tree"]:
        if parent_name is None:
            branch = _root_branch(acct, project, name, protected, t, spec["roles"], spec["dbs"])
            _start_endpoints(acct, project, branch, eps, t)
        else:
            t += rng.uniform(0.05, 0.25) * (t0 - t)
            branch, _, _ = acct.create_branch(project, by_name[parent_name], name, t, protected=protected,
                                              endpoint_types=eps, history=True)
        by_name[name] = branch
    for branch_name, role_names in spec["later_roles"].items():
        t += rng.uniform(0.05, 0.3) * (t0 - t)
        for role_name in role_names:
            _, ops = acct.create_role(project, by_name[branch_name], role_name, False, t, history=True)
            for op in ops:
                op.end_t = op.start_t = t  # historical: already finished
    project.updated_t = t
    if "allowed_ips" in spec:
        ips, protected_only = spec["allowed_ips"]
        project.allowed_ips, project.protected_branches_only = list(ips), protected_only


def _build_sized(acct: Account, cfg: SimConfig, t0: float) -> None:
    rng = acct.rng
    n_projects = cfg.projects if cfg.projects is not None else 3
    n_branches = cfg.branches if cfg.branches is not None else 3
    n_roles = cfg.roles if cfg.roles is not None else 2
    role_names = [EXTRA_ROLE_NAMES[i] if i < len(EXTRA_ROLE_NAMES) else f"role_{i + 1}" for i in range(n_roles)]
    primary = acct.orgs[0]
    width = len(str(n_projects))
    for i in range(n_projects):
        created = t0 - rng.uniform(30, 700) * DAY
        project = _new_project(acct, primary, f"service-{i + 1:0{width}d}", rng.choice(list(REGIONS)),
                               rng.choice((15, 16, 17)), True, created)
        main = _root_branch(acct, project, "main", rng.random() < 0.25, created, [OWNER, *role_names],
                            [("neondb", OWNER)])
        _start_endpoints(acct, project, main, ("read_write",), created)
        branches = [main]
        t = created
        for j in range(1, n_branches):
            t += rng.uniform(0.0, 0.1) * (t0 - t)
            parent = rng.choice(branches)
            eps = ("read_write",) if rng.random() < 0.8 else ()
            branch, _, _ = acct.create_branch(project, parent, f"dev/branch-{j}", t, endpoint_types=eps, history=True)
            branches.append(branch)
        project.updated_t = t
    # The other orgs stay small so sized accounts are dominated by the primary org.
    for org, name in ((acct.orgs[1], "sandbox"), (acct.orgs[2], "storefront")):
        created = t0 - rng.uniform(30, 300) * DAY
        project = _new_project(acct, org, name, "aws-us-east-2", 17, True, created)
        main = _root_branch(acct, project, "main", False, created, [OWNER, "app"], [("neondb", OWNER)])
        _start_endpoints(acct, project, main, ("read_write",), created)
