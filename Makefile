# llmproxy build.  `make` builds bin/; `make test` builds with ASan+UBSan
# under build/asan and runs every test; `make bench` measures overhead.

CC       ?= cc
PREFIX   ?= /usr/local
DESTDIR  ?=
SAN      ?= 0

PKGS     := sqlite3 libcurl openssl libcjson libzmq libseccomp
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

WARN     := -std=c11 -Wall -Wextra -Werror -Wformat=2 -Wshadow -Wno-format-nonliteral
CFLAGS   ?= -O2 -g
CFLAGS   += $(WARN) -D_GNU_SOURCE -Icommon -Iproxyd -Ilimiterd -Iadmin $(PKG_CFLAGS)
LDLIBS   := $(PKG_LIBS) -lm

ifeq ($(SAN),1)
BUILD    ?= build/asan
CFLAGS   += -O1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS  += -fsanitize=address,undefined
BINDIR   := $(BUILD)/bin
else
BUILD    ?= build/rel
BINDIR   := bin
endif

COMMON_SRC  := $(wildcard common/*.c)
PROXYD_SRC  := $(filter-out proxyd/main.c,$(wildcard proxyd/*.c proxyd/adapters/*.c))
LIMITD_SRC  := $(filter-out limiterd/main.c,$(wildcard limiterd/*.c))
ADMIN_SRC   := $(filter-out admin/main.c,$(wildcard admin/*.c))
UNIT_SRC    := $(wildcard tests/unit/test_*.c)

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))

LIBCOMMON := $(BUILD)/libcommon.a
LIBPROXYD := $(BUILD)/libproxyd.a
LIBLIMITD := $(BUILD)/liblimiterd.a
LIBADMIN  := $(BUILD)/libadmin.a
ALLLIBS   := $(LIBPROXYD) $(LIBLIMITD) $(LIBADMIN) $(LIBCOMMON)

BINS  := $(BINDIR)/proxyd $(BINDIR)/limiterd $(BINDIR)/llmproxy-admin
UNITS := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))

.PHONY: all deps test check unit bench fuzz run install clean
all: $(BINS) $(BINDIR)/llm-proxy

deps:
	scripts/install-deps

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c -o $@ $<

$(LIBCOMMON): $(call obj,$(COMMON_SRC))
$(LIBPROXYD): $(call obj,$(PROXYD_SRC))
$(LIBLIMITD): $(call obj,$(LIMITD_SRC))
$(LIBADMIN):  $(call obj,$(ADMIN_SRC))
$(BUILD)/%.a:
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BINDIR)/proxyd: $(call obj,proxyd/main.c) $(LIBPROXYD) $(LIBCOMMON)
$(BINDIR)/limiterd: $(call obj,limiterd/main.c) $(LIBLIMITD) $(LIBCOMMON)
$(BINDIR)/llmproxy-admin: $(call obj,admin/main.c) $(LIBADMIN) $(LIBCOMMON)
$(BINS):
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BINDIR)/llm-proxy: $(BINDIR)/llmproxy-admin
	ln -sf llmproxy-admin $@

$(BUILD)/tests/%: tests/unit/%.c $(ALLLIBS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests/unit $(LDFLAGS) -o $@ $< $(ALLLIBS) $(LDLIBS)

unit: $(UNITS)

$(BUILD)/limiter_bench: tests/bench/limiter_bench.c $(LIBPROXYD) $(LIBCOMMON)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LIBPROXYD) $(LIBCOMMON) $(LDLIBS)

# The README's test command: what is missing installed, sanitizer build,
# then every test.
test check:
	scripts/install-deps --if-missing
	$(MAKE) SAN=1 all unit
	tests/run build/asan

bench: all
	tests/bench/run

fuzz:
	tests/fuzz/run

# One command from a clone to a running proxy on 127.0.0.1:8132.
run:
	scripts/install-deps --if-missing
	$(MAKE) all
	bin/llmproxy-admin serve $(ARGS)

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/systemd/system
	install -m 0755 bin/proxyd bin/limiterd bin/llmproxy-admin $(DESTDIR)$(PREFIX)/bin/
	ln -sf llmproxy-admin $(DESTDIR)$(PREFIX)/bin/llm-proxy
	install -m 0644 systemd/*.socket systemd/*.service $(DESTDIR)$(PREFIX)/lib/systemd/system/
	install -D -m 0644 systemd/llmproxy.sysusers.conf $(DESTDIR)$(PREFIX)/lib/sysusers.d/llmproxy.conf
	install -D -m 0644 systemd/llmproxy.tmpfiles.conf $(DESTDIR)$(PREFIX)/lib/tmpfiles.d/llmproxy.conf
	install -D -m 0644 docs/deployment.md $(DESTDIR)$(PREFIX)/share/doc/llmproxy/deployment.md

clean:
	rm -rf build bin

-include $(shell find build -name '*.d' 2>/dev/null)
