# regua's image: one image for serve, worker, scheduler and migrate (the command picks the role).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
RUN groupadd --system --gid 10001 regua \
    && useradd --system --uid 10001 --gid regua --home-dir /app --shell /usr/sbin/nologin regua

# The pinned dependencies first, so that a code change does not reinstall them.
COPY requirements.lock ./
RUN pip install --requirement requirements.lock

COPY pyproject.toml README.md ./
COPY billing ./billing
COPY webhooks ./webhooks
COPY workers ./workers
COPY regua ./regua
COPY templates ./templates
# Editable, so the email templates beside the packages are found where the code looks for them.
RUN pip install --no-deps --editable .
# The code stays owned by root: the service reads it and never writes beside it.

USER regua
EXPOSE 8000
CMD ["regua", "serve", "--host", "0.0.0.0", "--port", "8000"]
