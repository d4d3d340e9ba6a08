# Sourced on the GPU machine, from the project root, once the staging calls brought every piece to /tmp/stage:
# benchmarks/gpu_stage.py's counterpart of ../shared/device/install.sh (which it replaces in .devcarry/base).
# Installs the small wheels (Keras, keras-tuner, what TensorFlow needs beyond the machine's image) into /tmp/site,
# unpacks TensorFlow there and the data sets into /tmp/data (each part checked against its SHA-256), and selects the
# JAX backend. A second call on the same machine finds them installed and only sets the variables.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [ ! -f /tmp/site/.unstaged ]; then  # written last by unstage: a call cut while unpacking unpacks again
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    "$here"/*.whl || return 1  # not `set -e`: bash ignores it inside `source … && …`, so a failure went unnoticed
  python3 benchmarks/gpu_stage.py unstage "$here/stage.json" /tmp/stage --site /tmp/site --data /tmp/data || return 1
fi
export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH} KERAS_BACKEND=${KERAS_BACKEND:-jax}
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false TF_CPP_MIN_LOG_LEVEL=2 SUITE_DATA_DIR=/tmp/data
