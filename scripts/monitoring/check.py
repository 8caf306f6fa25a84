#!/usr/bin/env python3
"""Checks the chart's monitoring files without a Prometheus or Grafana server.

  check.py DASHBOARD ALERTS DOCS OUT_DIR

1. The Grafana dashboard is JSON with a title, a uid, unique panel ids, panels that do
   not overlap, and a PromQL expression on every target.
2. Every dashboard expression is written into OUT_DIR/dashboard-rules.yaml as a
   recording rule (template variables replaced) so that `promtool check rules` parses
   each one with Prometheus's own parser.
3. The alert rules without annotations are written to
   OUT_DIR/alerts-without-annotations.yaml (for the firing tests).
4. Every `casescope_*` metric that the dashboard or the alerts use is one that
   docs/operations.md documents (its Prometheus name is listed there): a renamed metric
   cannot leave a silent panel or an alert that never fires.
Exits non-zero naming what is wrong.
"""
import json
import re
import sys

import yaml

dashboard_path, alerts_path, docs_path, out = sys.argv[1:5]
problems = []

dashboard = json.load(open(dashboard_path))
for key in ("title", "uid", "panels"):
    if not dashboard.get(key):
        problems.append(f"{dashboard_path}: no {key}")
ids = [panel.get("id") for panel in dashboard.get("panels", [])]
if len(ids) != len(set(ids)) or None in ids:
    problems.append(f"{dashboard_path}: panel ids are missing or repeated: {ids}")
cells = {}
expressions = []
for panel in dashboard.get("panels", []):
    grid = panel.get("gridPos", {})
    for dx in range(grid.get("w", 0)):
        for dy in range(grid.get("h", 0)):
            cell = (grid["x"] + dx, grid["y"] + dy)
            if cell in cells:
                problems.append(
                    f"{dashboard_path}: panel {panel['title']!r} overlaps {cells[cell]!r}"
                )
                break
            cells[cell] = panel["title"]
        else:
            continue
        break
    if panel.get("type") == "row":
        continue
    if grid.get("x", 0) + grid.get("w", 0) > 24:
        problems.append(f"{dashboard_path}: panel {panel['title']!r} is wider than the grid")
    targets = panel.get("targets") or []
    if not targets:
        problems.append(f"{dashboard_path}: panel {panel['title']!r} has no query")
    for target in targets:
        expr = target.get("expr", "")
        if not expr.strip():
            problems.append(f"{dashboard_path}: panel {panel['title']!r} has an empty query")
        expressions.append((panel["title"], expr))

rules = {"groups": [{"name": "dashboard", "rules": []}]}
for n, (title, expr) in enumerate(expressions):
    concrete = expr.replace("$namespace", ".*").replace("${namespace}", ".*")
    rules["groups"][0]["rules"].append({"record": f"dashboard:panel_{n}", "expr": concrete})
yaml.safe_dump(rules, open(f"{out}/dashboard-rules.yaml", "w"), sort_keys=False)

alerts = yaml.safe_load(open(alerts_path))
for group in alerts["groups"]:
    for rule in group["rules"]:
        rule.pop("annotations", None)
yaml.safe_dump(alerts, open(f"{out}/alerts-without-annotations.yaml", "w"), sort_keys=False)

documented = set(re.findall(r"`(casescope_[a-z_]+)`", open(docs_path).read()))
used = set()
for text in [expr for _, expr in expressions] + [
    rule["expr"] for group in alerts["groups"] for rule in group["rules"]
]:
    for name in re.findall(r"casescope_[a-z_]+", text):
        used.add(re.sub(r"_(bucket|count|sum)$", "", name))
for name in sorted(used - documented):
    problems.append(f"metric {name} is used by the dashboard or the alerts but not documented in {docs_path}")

if problems:
    print("\n".join(problems), file=sys.stderr)
    sys.exit(1)
print(
    f"ok: dashboard ({len(expressions)} queries) and alerts use {len(used)} metrics, all documented"
)
