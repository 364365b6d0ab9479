"""Abandonment-risk models: training sets, LightGBM, river, registry and gate."""

import os

# OpenMP threads that spin while they wait burn a shared machine's cores:
# boosting 100k rows took 47-80 s with spinning threads against 8.3 s with
# passive waiting, on a 2-core machine under load. It must be set before
# LightGBM loads its OpenMP runtime, so it is set when this package loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
