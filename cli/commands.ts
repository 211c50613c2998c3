/**
 * Every `trellis` subcommand, in the order `trellis --help` lists them. Add a command by importing it here.
 */
import type { Command } from './command.js';

export const commands: readonly Command[] = [];
