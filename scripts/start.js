#!/usr/bin/env node
/**
 * `npm start`: builds what changed (scripts/build.js: nothing, on a built tree), then runs the front in this same
 * process (no second Node start-up, and signals reach it directly), which prints, once it listens, the address
 * to open and how to get a token.
 */
'use strict';
const { build } = require('./build.js');

build();
// Dev login by default, as a development command should; production refuses it (server/config.ts).
if (!process.env.AUTH_DEV_LOGIN && process.env.NODE_ENV !== 'production') process.env.AUTH_DEV_LOGIN = '1';
void require('../dist/server/main.js').main({ banner: true });
