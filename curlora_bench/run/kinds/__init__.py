"""run/kinds"""
