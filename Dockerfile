FROM python:3.11-slim
# libsndfile comes inside the soundfile wheel; nothing to apt-get.
WORKDIR /opt/hmmclf
COPY setup.cfg pyproject.toml README.md ./
COPY hmmclf ./hmmclf
RUN pip install --no-cache-dir .
ENV MPLBACKEND=Agg
WORKDIR /data
ENTRYPOINT ["hmmclf"]
CMD ["--help"]
