/**
 * Every `trellis` subcommand, in the order `trellis --help` lists them. Add a command by importing it here.
 */
import type { Command } from './command.js';
import { caCommand } from './ca.js';
import { policyCommand } from './policy.js';
import { explainCommand } from './explain.js';
import { agentCommand } from './agent.js';

export const commands: readonly Command[] = [caCommand, policyCommand, explainCommand, agentCommand];
