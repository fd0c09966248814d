# tunneld: one GNU make file.
#   make            build daemon/tunneld and ctl/tunctl
#   make check      install what is missing, build, run every test
#   make asan       build both programs with ASan and UBSan into build-asan/
#   make e2e-asan   the end-to-end tests against that build
#   make demo       a throw-away sshd and tunneld moving data through each tunnel
#   make bench      tunneld against OpenSSH on a private sshd (QUICK=1: < 2 min;
#                   SECTIONS=a,b: only those; SECTIONS=scale: 100,000 connections)
#   make soak       churn and a link fault every 20 s for MINUTES (10), RSS and
#                   fds must not trend upward; CSV and chart in OUT (build/soak)
#   make install    DESTDIR, PREFIX (make uninstall: the same variables)
#   make deb        the Debian package: build-deb/tunneld_VERSION_ARCH.deb, lintian
#   make clean

PREFIX	?= /usr/local
SBINDIR	?= $(PREFIX)/sbin
BINDIR	?= $(PREFIX)/bin
MANDIR	?= $(PREFIX)/share/man
# systemd's directories, as systemd.pc names them (Debian 12:
# /lib/systemd/system, /usr/lib/sysusers.d, /usr/lib/tmpfiles.d), whatever
# PREFIX is: systemd reads only its own. The configuration is /etc/tunnels.conf.
SYSTEMD_PC = $(shell pkg-config --variable=$(1) systemd 2>/dev/null)
UNITDIR	?= $(or $(call SYSTEMD_PC,systemdsystemunitdir),/lib/systemd/system)
SYSUSERSDIR ?= $(or $(call SYSTEMD_PC,sysusersdir),/usr/lib/sysusers.d)
TMPFILESDIR ?= $(or $(call SYSTEMD_PC,tmpfilesdir),/usr/lib/tmpfiles.d)
SYSCONFDIR ?= /etc
CC	?= cc
PYTHON	?= /usr/bin/python3

PKGS	 = libssh libevent libconfig libsystemd
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

CFLAGS	?= -O2 -g
WARN	 = -Wall -Wextra -Werror -Wshadow -Wpointer-arith -Wstrict-prototypes \
	   -Wmissing-prototypes -Wmissing-declarations -Wformat=2 \
	   -Wno-format-nonliteral -Wwrite-strings
ALL_CFLAGS = -std=gnu11 -D_GNU_SOURCE -Idaemon $(PKG_CFLAGS) $(WARN) $(CFLAGS)

SAN_CFLAGS = -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
	     -fno-sanitize-recover=undefined

DAEMON_SRCS = daemon/main.c daemon/conf.c daemon/conf_daemon.c daemon/conf_value.c daemon/link.c daemon/dial.c daemon/jump.c daemon/handshake.c daemon/known_hosts.c daemon/agent.c daemon/greq.c daemon/sendq.c daemon/pump.c \
	      daemon/chan.c daemon/window.c daemon/membudget.c daemon/chan_connect.c daemon/chan_socks.c daemon/socks.c daemon/fwd.c daemon/fwd_local.c daemon/listen_tcp.c daemon/fwd_remote.c daemon/control.c daemon/control_verbs.c daemon/control_access.c daemon/control_sock.c daemon/control_show.c daemon/events.c daemon/reload.c daemon/notify.c daemon/sdfds.c daemon/ctl-proto.c daemon/metrics.c daemon/metrics_http.c \
	      daemon/netwatch.c daemon/resolvwatch.c daemon/resume.c \
	      daemon/log.c daemon/logrl.c daemon/util.c
DAEMON_SRCS += daemon/errclass.c
CTL_SRCS    = ctl/tunctl.c daemon/ctl-proto.c daemon/conf.c daemon/conf_daemon.c daemon/conf_value.c daemon/log.c daemon/util.c
UNIT_TESTS  = test_conf test_util test_control test_socks test_dial test_log test_metrics test_events test_resume
UNIT_TESTS += test_errclass
UNIT_SRCS_test_errclass = tests/unit/test_errclass.c daemon/errclass.c daemon/log.c daemon/util.c
UNIT_SRCS_test_conf    = tests/unit/test_conf.c daemon/conf.c daemon/conf_daemon.c daemon/conf_value.c daemon/log.c daemon/util.c
UNIT_SRCS_test_util    = tests/unit/test_util.c daemon/log.c daemon/util.c
UNIT_SRCS_test_control = tests/unit/test_control.c daemon/control_show.c daemon/ctl-proto.c daemon/log.c daemon/util.c daemon/errclass.c
UNIT_SRCS_test_socks   = tests/unit/test_socks.c daemon/socks.c
UNIT_SRCS_test_dial    = tests/unit/test_dial.c daemon/dial.c daemon/log.c daemon/util.c
UNIT_SRCS_test_log     = tests/unit/test_log.c daemon/log.c daemon/util.c
UNIT_SRCS_test_metrics = tests/unit/test_metrics.c daemon/metrics.c daemon/metrics_http.c daemon/listen_tcp.c daemon/errclass.c daemon/log.c daemon/util.c
UNIT_SRCS_test_events  = tests/unit/test_events.c daemon/events.c daemon/log.c daemon/util.c
UNIT_SRCS_test_resume  = tests/unit/test_resume.c daemon/resume.c
# test_dial stands in for connect() to simulate addresses that never answer.
UNIT_LDFLAGS_test_dial = -Wl,--wrap=connect

# LIBSSH=patched: link tunneld statically against Debian's libssh source
# with the series of third_party/libssh/patches/ applied, built by
# scripts/libssh-patched.sh in LIBSSH_DIR (fetched and built once, never
# installed), into build-patched/ (docs/benchmarks.md, "libssh receive
# path"). The default, LIBSSH=system, is the system's libssh-4.
LIBSSH	?= system
LIBSSH_DIR ?= build-libssh
LIBSSH_A = $(LIBSSH_DIR)/build/src/libssh.a
PB	?= build-patched
ifeq ($(LIBSSH),patched)
B	?= $(PB)
BA	?= build-asan-patched
PKG_CFLAGS := -I$(LIBSSH_DIR)/build/include -I$(LIBSSH_DIR)/tree/include \
	      $(shell pkg-config --cflags $(filter-out libssh,$(PKGS)) 2>/dev/null)
PKG_LIBS   := $(LIBSSH_A) -lcrypto -lz \
	      $(shell pkg-config --libs $(filter-out libssh,$(PKGS)) 2>/dev/null)
endif
B	?= build
BA	?= build-asan

all: $(B)/tunneld $(B)/tunctl

obj = $(patsubst %.c,$(1)/%.o,$(2))

$(B)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -MMD -MP -c $< -o $@

$(BA)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(SAN_CFLAGS) $(shell pkg-config --cflags cmocka) -MMD -MP -c $< -o $@

$(B)/tunneld: $(call obj,$(B),$(DAEMON_SRCS))
	$(CC) $(CFLAGS) -o $@ $^ $(PKG_LIBS) -lm

$(B)/tunctl: $(call obj,$(B),$(CTL_SRCS))
	$(CC) $(CFLAGS) -o $@ $^ $(PKG_LIBS) -lm

$(BA)/tunneld: $(call obj,$(BA),$(DAEMON_SRCS))
	$(CC) $(SAN_CFLAGS) -o $@ $^ $(PKG_LIBS) -lm

$(BA)/tunctl: $(call obj,$(BA),$(CTL_SRCS))
	$(CC) $(SAN_CFLAGS) -o $@ $^ $(PKG_LIBS) -lm

define unit_rule
$(BA)/$(1): $(call obj,$(BA),$(UNIT_SRCS_$(1)))
	$$(CC) $$(SAN_CFLAGS) $$(UNIT_LDFLAGS_$(1)) -o $$@ $$^ $$(PKG_LIBS) $$(shell pkg-config --libs cmocka) -lm
endef
$(foreach t,$(UNIT_TESTS),$(eval $(call unit_rule,$(t))))

asan: $(BA)/tunneld $(BA)/tunctl

deps:
	@sh scripts/install-deps.sh

unit: $(addprefix $(BA)/,$(UNIT_TESTS))
	@set -e; for t in $(UNIT_TESTS); do \
		echo "== $$t"; \
		ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
		    TESTDATA=tests/unit/data ./$(BA)/$$t; \
	done

# make fuzz: the libFuzzer harnesses of tests/fuzz/ (clang, ASan and
# UBSan), each FUZZ_SECONDS, seeded from tests/fuzz/corpus_* (with the
# dictionary tests/fuzz/NAME.dict when there is one); what they learn and
# any crash goes to $(B)/fuzz/. Not part of make check. One harness:
# make fuzz FUZZ_TARGETS=fuzz_ctl.
FUZZ_CC		?= clang
FUZZ_SECONDS	?= 60
FUZZ_SMOKE_SECONDS ?= 20
FUZZ_TARGETS	 = fuzz_socks fuzz_ctl fuzz_conf fuzz_metrics
FUZZ_DEPS_fuzz_socks = tests/fuzz/fuzz_socks.c daemon/socks.c daemon/socks.h
FUZZ_DEPS_fuzz_ctl = tests/fuzz/fuzz_ctl.c daemon/ctl-proto.c \
		   daemon/util.c daemon/log.c daemon/ctl-proto.h daemon/tunneld.h
FUZZ_DEPS_fuzz_conf = tests/fuzz/fuzz_conf.c daemon/conf.c daemon/conf_daemon.c \
		   daemon/conf_value.c daemon/util.c daemon/log.c \
		   daemon/tunneld.h
FUZZ_DEPS_fuzz_metrics = tests/fuzz/fuzz_metrics.c daemon/metrics_http.c daemon/listen_tcp.c \
		   daemon/util.c daemon/log.c daemon/tunneld.h
FUZZ_LIBS_fuzz_ctl = $(PKG_LIBS) -lm
FUZZ_LIBS_fuzz_metrics = $(PKG_LIBS) -lm
FUZZ_LIBS_fuzz_conf = $(PKG_LIBS) -lm
FUZZ_MAXLEN_fuzz_socks = 2048
FUZZ_MAXLEN_fuzz_ctl = 8192
FUZZ_MAXLEN_fuzz_conf = 8192
FUZZ_MAXLEN_fuzz_metrics = 8192
FUZZ_FLAGS	 = -O1 -g -fno-omit-frame-pointer \
		   -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
# Every run: bounded memory and time per input; a finding stops it.
FUZZ_OPTS	 = -rss_limit_mb=2048 -timeout=10 -print_final_stats=1
FUZZ_ENV	 = ASAN_OPTIONS=detect_leaks=1 \
		   LSAN_OPTIONS=suppressions=$(CURDIR)/tests/fuzz/lsan.supp:print_suppressions=0 \
		   UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
# Each harness as NAME:MAX_LEN; FUZZ_ARG sets t, m and dict from one.
FUZZ_LIST	 = $(foreach t,$(FUZZ_TARGETS),$(t):$(FUZZ_MAXLEN_$(t)))
FUZZ_ARG	 = t=$${tm%%:*}; m=$${tm\#*:}; dict=; \
		   d=tests/fuzz/$${t\#fuzz_}.dict; [ ! -f $$d ] || dict=-dict=$$d

define fuzz_rule
$(B)/fuzz/$(1): $(FUZZ_DEPS_$(1))
	@mkdir -p $$(dir $$@)
	$$(FUZZ_CC) -std=gnu11 -D_GNU_SOURCE -Idaemon $$(PKG_CFLAGS) $$(WARN) \
	    $$(FUZZ_FLAGS) -o $$@ $$(filter %.c,$$^) $$(FUZZ_LIBS_$(1))
endef
$(foreach t,$(FUZZ_TARGETS),$(eval $(call fuzz_rule,$(t))))

fuzz: $(addprefix $(B)/fuzz/,$(FUZZ_TARGETS))
	@set -e; for tm in $(FUZZ_LIST); do $(FUZZ_ARG); \
		c=corpus_$${t#fuzz_}; mkdir -p $(B)/fuzz/$$c; \
		echo "== $$t: $(FUZZ_SECONDS) s"; \
		$(FUZZ_ENV) ./$(B)/fuzz/$$t $(FUZZ_OPTS) -max_len=$$m $$dict \
		    -max_total_time=$(FUZZ_SECONDS) \
		    -artifact_prefix=$(B)/fuzz/$$t- \
		    $(B)/fuzz/$$c tests/fuzz/$$c; \
	done

# make fuzz-smoke: each harness FUZZ_SMOKE_SECONDS from its corpus in the
# tree (part of make check); a crash, a leak, a sanitizer report, a slow
# input or a memory blow-up fails it. What it learns is thrown away.
fuzz-smoke: $(addprefix $(B)/fuzz/,$(FUZZ_TARGETS))
	@set -e; for tm in $(FUZZ_LIST); do $(FUZZ_ARG); \
		w=$(B)/fuzz/smoke-$$t; rm -rf $$w; mkdir -p $$w; \
		log=$(B)/fuzz/$$t-smoke.log; \
		$(FUZZ_ENV) ./$(B)/fuzz/$$t $(FUZZ_OPTS) -max_len=$$m $$dict \
		    -max_total_time=$(FUZZ_SMOKE_SECONDS) \
		    -artifact_prefix=$(B)/fuzz/$$t- \
		    $$w tests/fuzz/corpus_$${t#fuzz_} >$$log 2>&1 || { \
			tail -60 $$log >&2; \
			echo "fuzz-smoke: $$t: finding, see $$log" >&2; \
			exit 1; }; \
		echo "fuzz-smoke: $$t: $(FUZZ_SMOKE_SECONDS) s," \
		    "$$(sed -n 's/^stat::number_of_executed_units: *//p' \
		    $$log) executions, $$(grep -o 'cov: [0-9]*' $$log | \
		    tail -1), no finding"; \
		rm -rf $$w; \
	done

# make fuzz-replay: every input of every tests/fuzz/corpus_* run once
# through its harness (part of make check); a crash or sanitizer report
# fails it.
fuzz-replay: $(addprefix $(B)/fuzz/,$(FUZZ_TARGETS))
	@set -e; for t in $(FUZZ_TARGETS); do \
		c=tests/fuzz/corpus_$${t#fuzz_}; \
		n=$$(find $$c -type f | wc -l); \
		[ $$n -gt 0 ] || { echo "fuzz-replay: $$c is empty" >&2; exit 1; }; \
		$(FUZZ_ENV) ./$(B)/fuzz/$$t -runs=0 \
		    $$(find $$c -type f | sort) \
		    >$(B)/fuzz/$$t-replay.log 2>&1 || { \
			tail -40 $(B)/fuzz/$$t-replay.log >&2; exit 1; }; \
		echo "fuzz-replay: $$t: $$n inputs, no finding"; \
	done

.PHONY: fuzz fuzz-smoke fuzz-replay

# deb: the package that tests/e2e/test_deb.py installs (built once here).
e2e: all deb
	TUNNELD_BIN=$(CURDIR)/$(B)/tunneld TUNCTL_BIN=$(CURDIR)/$(B)/tunctl \
	    $(PYTHON) -m pytest -q tests/e2e $(PYTEST_ARGS)

# make e2e-asan: the same end-to-end suite against the ASan/UBSan/LSan
# build of tunneld and tunctl.  Every report goes to a file under
# $(BA)/sanlog; the suite fails the test after which one appears, even when
# the process exited 0.
SANLOG	 = $(CURDIR)/$(BA)/sanlog
e2e-asan: asan
	rm -rf $(SANLOG) && mkdir -p $(SANLOG)
	TUNNELD_BIN=$(CURDIR)/$(BA)/tunneld TUNCTL_BIN=$(CURDIR)/$(BA)/tunctl \
	    E2E_SAN_LOG_DIR=$(SANLOG) \
	    ASAN_OPTIONS=halt_on_error=1:detect_leaks=1:log_path=$(SANLOG)/asan \
	    UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1:log_path=$(SANLOG)/ubsan \
	    $(PYTHON) -m pytest -q tests/e2e $(PYTEST_ARGS)
	@if [ -n "$$(ls -A $(SANLOG))" ]; then \
		echo "e2e-asan: sanitizer reports in $(SANLOG):" >&2; \
		head -50 $(SANLOG)/* >&2; exit 1; fi

# The patched libssh (LIBSSH=patched above): fetched, patched and built
# once by scripts/libssh-patched.sh; again only when a series changes
# (security/: our CVE fixes, applied when the source is not the installed
# version's; patches/: the receive path).
LIBSSH_SERIES = third_party/libssh/patches/series \
		$(wildcard third_party/libssh/patches/*.patch) \
		third_party/libssh/security/series \
		$(wildcard third_party/libssh/security/*.patch)
$(LIBSSH_A): $(LIBSSH_SERIES) scripts/libssh-patched.sh
	sh scripts/libssh-patched.sh $(LIBSSH_DIR) build
	@touch $@
ifeq ($(LIBSSH),patched)
$(call obj,$(B),$(DAEMON_SRCS) $(CTL_SRCS)): | $(LIBSSH_A)
$(call obj,$(BA),$(DAEMON_SRCS) $(CTL_SRCS)): | $(LIBSSH_A)
$(B)/tunneld $(BA)/tunneld: $(LIBSSH_A)
endif

# make libssh-test: libssh's own unit tests (tests/unittests, cmocka) on
# the patched source, built a second time with AddressSanitizer.
libssh-test:
	sh scripts/libssh-patched.sh $(LIBSSH_DIR) test

# make libssh-scope: tunneld linked with the patched libssh holds no SFTP
# or SCP code (no sftp_, ssh_scp_ or scp_ symbol): the reason the CVE
# fixes of deb12u3 for that code are not in third_party/libssh/security/.
libssh-scope:
	$(MAKE) LIBSSH=patched B=$(PB) BA=build-asan-patched $(PB)/tunneld
	sh scripts/libssh-patched.sh $(LIBSSH_DIR) scope $(PB)/tunneld

# make e2e-patched: the end-to-end suite against tunneld linked with the
# patched libssh, built in $(PB); less the packaging tests (deb, install,
# systemd), which build the default variant themselves.
# E2E_PATCHED=check (what make check runs): the tests that move data
# through libssh's send and receive paths (every tunnel kind, both
# servers, windows, the memory budget, chains, faults on the wire), about
# 4 of the suite's 10 minutes; less one 30 s keepalive test that only
# waits. The whole suite: make e2e-patched.
E2E_PATCHED_ALL = tests/e2e --ignore=tests/e2e/test_deb.py \
	--ignore=tests/e2e/test_install.py --ignore=tests/e2e/test_systemd.py
E2E_PATCHED_CHECK = $(addprefix tests/e2e/test_,$(addsuffix .py,data \
	window remote dynamic relay jump links dropbear membudget faults \
	faults_net)) \
	--deselect tests/e2e/test_dropbear.py::test_keepalives_30s_no_false_verdict
E2E_PATCHED ?= all
E2E_PATCHED_SEL = $(if $(filter check,$(E2E_PATCHED)),$(E2E_PATCHED_CHECK),\
	$(E2E_PATCHED_ALL))
e2e-patched:
	$(MAKE) LIBSSH=patched B=$(PB) BA=build-asan-patched all
	TUNNELD_BIN=$(CURDIR)/$(PB)/tunneld TUNCTL_BIN=$(CURDIR)/$(PB)/tunctl \
	    $(PYTHON) -m pytest -q $(E2E_PATCHED_SEL) $(PYTEST_ARGS)

check: deps
	$(MAKE) all
	$(MAKE) unit
	$(MAKE) fuzz-replay
	$(MAKE) fuzz-smoke
	$(MAKE) configs
	@# Building and testing the patched libssh (4 minutes, CPU-bound)
	@# runs beside the -O2 e2e pass (10 minutes, mostly waiting on
	@# timers): the whole check stays within CI's 30 minutes.
	@mkdir -p $(B); echo "make libssh-test > $(B)/libssh-test.log (beside make e2e)"; \
	$(MAKE) --no-print-directory libssh-test > $(B)/libssh-test.log 2>&1 & \
	lt=$$!; $(MAKE) e2e; e=$$?; wait $$lt; l=$$?; \
	echo "== make libssh-test: exit $$l"; \
	tail -n $$([ $$l = 0 ] && echo 4 || echo 80) $(B)/libssh-test.log; \
	[ $$e = 0 ] && [ $$l = 0 ]
	$(MAKE) e2e-asan
	$(MAKE) libssh-scope
	$(MAKE) e2e-patched E2E_PATCHED=check

# The shipped example files must pass the checker.
configs: all
	@set -e; for f in conf/tunnels.conf conf/demo.conf conf/examples/*.conf; do \
		[ -f "$$f" ] || continue; \
		./$(B)/tunneld -t -f $$f >/dev/null; echo "config ok: $$f"; \
	done

demo: deps
	$(MAKE) all
	sh scripts/demo.sh

# make install: the programs, manual pages, systemd units, sysusers.d and
# tmpfiles.d files, and conf/tunnels.conf as $(SYSCONFDIR)/tunnels.conf
# only when there is none (never replacing one, changed or not). The units
# name $(SBINDIR)/tunneld. Without DESTDIR, on the running system, it then
# does what a package's postinst would (POSTINSTALL=no skips it): creates
# the user and the group (systemd-sysusers) and the directories
# (systemd-tmpfiles), and has systemd re-read its units; it enables and
# starts nothing.
# make uninstall removes what install put, except tunnels.conf (the user's
# configuration, like a package's conffile on remove: delete it by hand)
# and what the service made: /etc/tunneld (keys), /var/lib/tunneld
# (known_hosts), the user tunneld and the group tunnel.
POSTINSTALL ?= $(if $(DESTDIR),no,yes)
INSTALL_FILES = $(SBINDIR)/tunneld $(BINDIR)/tunctl \
	$(MANDIR)/man8/tunneld.8 $(MANDIR)/man1/tunctl.1 \
	$(MANDIR)/man5/tunnels.conf.5 \
	$(UNITDIR)/tunneld.service $(UNITDIR)/tunneld.socket \
	$(SYSUSERSDIR)/tunneld.conf $(TMPFILESDIR)/tunneld.conf

install: all
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(BINDIR) \
	    $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man5 \
	    $(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSUSERSDIR) $(DESTDIR)$(TMPFILESDIR) \
	    $(DESTDIR)$(SYSCONFDIR)
	install -m 755 $(B)/tunneld $(DESTDIR)$(SBINDIR)/tunneld
	install -m 755 $(B)/tunctl $(DESTDIR)$(BINDIR)/tunctl
	install -m 644 docs/tunneld.8 $(DESTDIR)$(MANDIR)/man8/tunneld.8
	install -m 644 docs/tunctl.1 $(DESTDIR)$(MANDIR)/man1/tunctl.1
	install -m 644 docs/tunnels.conf.5 $(DESTDIR)$(MANDIR)/man5/tunnels.conf.5
	@mkdir -p $(B)/systemd
	sed -e 's|/usr/sbin/tunneld|$(SBINDIR)/tunneld|g' systemd/tunneld.service \
	    > $(B)/systemd/tunneld.service
	install -m 644 $(B)/systemd/tunneld.service $(DESTDIR)$(UNITDIR)/tunneld.service
	install -m 644 systemd/tunneld.socket $(DESTDIR)$(UNITDIR)/tunneld.socket
	install -m 644 systemd/tunneld.sysusers $(DESTDIR)$(SYSUSERSDIR)/tunneld.conf
	install -m 644 systemd/tunneld.tmpfiles $(DESTDIR)$(TMPFILESDIR)/tunneld.conf
	@f='$(DESTDIR)$(SYSCONFDIR)/tunnels.conf'; \
	if [ -e "$$f" ] || [ -L "$$f" ]; then \
		echo "install: $$f exists: left as it is"; \
	else \
		echo "install -m 644 conf/tunnels.conf $$f"; \
		install -m 644 conf/tunnels.conf "$$f"; \
	fi
	@if [ "$(POSTINSTALL)" = yes ]; then \
		if command -v systemd-sysusers >/dev/null; then \
			echo "systemd-sysusers $(SYSUSERSDIR)/tunneld.conf"; \
			systemd-sysusers $(SYSUSERSDIR)/tunneld.conf; fi; \
		if command -v systemd-tmpfiles >/dev/null; then \
			echo "systemd-tmpfiles --create $(TMPFILESDIR)/tunneld.conf"; \
			systemd-tmpfiles --create $(TMPFILESDIR)/tunneld.conf; fi; \
		if [ -d /run/systemd/system ]; then \
			echo "systemctl daemon-reload"; systemctl daemon-reload; fi; \
	fi

uninstall:
	rm -f $(addprefix $(DESTDIR),$(INSTALL_FILES))
	@f='$(DESTDIR)$(SYSCONFDIR)/tunnels.conf'; \
	if [ -e "$$f" ]; then echo "uninstall: $$f left in place (your configuration)"; fi
	@if [ "$(POSTINSTALL)" = yes ] && [ -d /run/systemd/system ]; then \
		echo "systemctl daemon-reload"; systemctl daemon-reload; fi

# make deb: the Debian package (debian/), built by dpkg-buildpackage in a
# copy of the tree under $(DEB_DIR)/, then checked by lintian
# (scripts/deb.sh says what it leaves there; LINTIAN=no skips lintian).
DEB_DIR	?= build-deb
deb:
	@sh scripts/deb.sh '$(DEB_DIR)'

clean:
	rm -rf $(B) $(BA) tests/e2e/__pycache__ .pytest_cache

# Benchmarks against OpenSSH (docs/benchmarks.md). QUICK=1 for a short run;
# BENCH_ARGS passes options to bench/bench.py (--help lists them). The
# throughput and WAN sections also measure tunneld linked with the patched
# libssh (make LIBSSH=patched, into $(PB)); when it does not build (no apt
# source reachable, say), the bench says so and measures the stock one only.
# PATCHED=0 skips it.
PATCHED	?= 1

$(B)/loadgen: bench/loadgen.c
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 -D_GNU_SOURCE $(WARN) $(CFLAGS) -o $@ $<

bench: all $(B)/loadgen
	@sh scripts/install-deps.sh || echo "bench: packages missing (autossh?); those figures are skipped" >&2
	@p=; why="not asked (PATCHED=$(PATCHED))"; \
	if [ "$(PATCHED)" = 1 ]; then \
	    echo "bench: building the patched tunneld ($(B)/patched-build.log)"; \
	    if $(MAKE) --no-print-directory LIBSSH=patched B=$(PB) \
	        BA=build-asan-patched all > $(B)/patched-build.log 2>&1; then \
	        p=$(CURDIR)/$(PB)/tunneld; why=; \
	    else \
	        why="make LIBSSH=patched failed, see $(B)/patched-build.log"; \
	        tail -n 5 $(B)/patched-build.log >&2; \
	        echo "bench: $$why: stock tunneld only" >&2; \
	    fi; \
	fi; \
	set -x; TUNNELD_PATCHED_BIN=$$p TUNNELD_PATCHED_WHY="$$why" \
	    TUNNELD_BIN=$(CURDIR)/$(B)/tunneld TUNCTL_BIN=$(CURDIR)/$(B)/tunctl \
	    LOADGEN_BIN=$(CURDIR)/$(B)/loadgen \
	    $(PYTHON) bench/bench.py $(if $(filter 1 yes true,$(QUICK)),--quick) \
	    $(if $(SECTIONS),--only $(SECTIONS)) $(BENCH_ARGS)

# make soak: connections through every tunnel kind and a link fault every
# 20 s for MINUTES; samples tunneld's RSS, descriptors and CPU every second
# into OUT/samples.csv and charts them in OUT/soak.png (docs/soak.md).
# Fails when RSS or descriptors trend upward or a connection fails outside
# a fault. Not part of make check; installs python3-matplotlib (the chart)
# when it is missing.
MINUTES	?= 10
OUT	?= $(B)/soak
soak: all $(B)/loadgen
	@$(PYTHON) -c 'import matplotlib' 2>/dev/null || \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
	    python3-matplotlib || echo "soak: no python3-matplotlib: no chart" >&2
	TUNNELD_BIN=$(CURDIR)/$(B)/tunneld TUNCTL_BIN=$(CURDIR)/$(B)/tunctl \
	    LOADGEN_BIN=$(CURDIR)/$(B)/loadgen \
	    timeout -k 30 $$(awk 'BEGIN { print int($(MINUTES) * 60 + 900) }') \
	    $(PYTHON) bench/soak.py --minutes $(MINUTES) --out $(OUT) $(SOAK_ARGS)

.PHONY: all asan deps unit e2e e2e-asan check configs demo install uninstall deb clean bench soak
.PHONY: libssh-test libssh-scope e2e-patched

-include $(shell find $(B) $(BA) -name '*.d' 2>/dev/null)
