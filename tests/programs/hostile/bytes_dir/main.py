"""Run from a directory whose name is not valid UTF-8 (the test copies it to
`bytes \xff dir`): it imports a module from there, so that module's file
name, as Python reports it, holds the undecodable byte."""
import helper

print(helper.where())
