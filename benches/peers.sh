# Sourced by the benches that measure PM2 and supervisord: installs both, once, under WORK
# (PM2 5 from npm into WORK/pm2, supervisord from PyPI into the venv WORK/venv).
install_peers() {
    local work="$1"
    mkdir -p "$work"
    if [ ! -x "$work/pm2/node_modules/.bin/pm2" ]; then
        npm install --silent --prefix "$work/pm2" pm2@5 >&2
    fi
    if [ ! -x "$work/venv/bin/supervisord" ]; then
        python3 -m venv "$work/venv"
        "$work/venv/bin/pip" install --quiet supervisor >&2
    fi
}
