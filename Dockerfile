# The app as a container (also a Hugging Face Docker Space): python app.py on port 7860, as uid 1000.
#   docker build -t teaching . && docker run --rm -p 7860:7860 teaching     # then open http://127.0.0.1:7860
# The gallery photos are downloaded at build time into the image; photos that cannot be fetched are listed by the
# app as missing, and uploads work all the same.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    GRADIO_SERVER_NAME=0.0.0.0 \
    GRADIO_SERVER_PORT=7860 \
    GRADIO_ANALYTICS_ENABLED=False \
    HOME=/home/user \
    TEACHING_CACHE_DIR=/home/user/.cache/teaching/galleries

# OpenCV (headless) still links against GLib; fonts-noto-cjk draws the Chinese text of the PNG grids.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libglib2.0-0 fonts-noto-cjk \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 1000 user

WORKDIR /home/user/app
# requirements.txt ends with `-e .` (the package, so `teaching` works from any folder): it needs the package's files.
COPY requirements.txt pyproject.toml ./
COPY teaching ./teaching
RUN pip install -r requirements.txt

COPY --chown=user:user . .
USER user

# Exit status 1 means some photos are missing (offline build, a licence that is not free): keep building.
RUN python -m teaching.galleries download || echo "some gallery photos are missing; the app lists them"

EXPOSE 7860
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:7860/', timeout=4)"
CMD ["python", "app.py"]
