"""Reads the Prometheus text format on stdin with the parser of Debian's
python3-prometheus-client (the one Prometheus' own Python tooling uses) and
prints its samples as JSON: [{"family", "type", "name", "labels", "value"}].
Run under /usr/bin/python3, where Debian's packages import."""

import json
import sys

from prometheus_client.parser import text_string_to_metric_families

out = []
for fam in text_string_to_metric_families(sys.stdin.read()):
    for s in fam.samples:
        out.append({"family": fam.name, "type": fam.type, "name": s.name,
                    "labels": s.labels, "value": s.value})
json.dump(out, sys.stdout)
